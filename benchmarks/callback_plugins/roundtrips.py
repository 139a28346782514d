# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Count, per host, the task results that needed the target (module round trips)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: roundtrips
type: aggregate
short_description: Count module round trips per host
description:
  - Counts the task results per host whose action ran on the target, and writes them as JSON to
    the file named by the environment variable C(VFIO_AVIC_ROUNDTRIPS_FILE) when the run ends.
  - Controller-only actions (set_fact, debug, assert, include_*, meta, ...) and tasks delegated to
    localhost are not counted.
requirements:
  - the environment variable C(VFIO_AVIC_ROUNDTRIPS_FILE)
'''

import collections
import json
import os

from ansible.plugins.callback import CallbackBase

LOCAL_ACTIONS = frozenset([
    'set_fact', 'debug', 'assert', 'fail', 'meta', 'include_tasks', 'import_tasks', 'include_role',
    'import_role', 'include_vars', 'add_host', 'group_by', 'set_stats', 'validate_argument_spec',
    'pause', 'noop',
])


class CallbackModule(CallbackBase):
    """Aggregate callback counting round trips."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'roundtrips'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.counts = collections.Counter()

    def _count(self, result):
        task = result._task
        action = task.action.split('.')[-1]
        if action in LOCAL_ACTIONS or task.delegate_to in ('localhost', '127.0.0.1'):
            return
        if result._result.get('skipped'):
            return
        self.counts[result._host.get_name()] += 1

    v2_runner_on_ok = _count
    v2_runner_on_failed = _count
    v2_runner_on_unreachable = _count

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('VFIO_AVIC_ROUNDTRIPS_FILE')
        if path:
            with open(path, 'w') as handle:
                json.dump(dict(self.counts), handle)
