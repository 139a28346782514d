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
  - A loop task is counted once per item that ran on the target (each item is its own module
    call); its final, aggregated result is not counted again. Skipped tasks and items are not
    counted.
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

    @staticmethod
    def _remote(task):
        action = task.action.split('.')[-1]
        return action not in LOCAL_ACTIONS and task.delegate_to not in ('localhost', '127.0.0.1')

    def _count(self, result):
        """A task result; a loop's aggregated result was already counted item by item."""
        task = result._task
        if not self._remote(task) or result._result.get('skipped'):
            return
        if isinstance(result._result.get('results'), list) and (task.loop is not None or task.loop_with):
            return
        self.counts[result._host.get_name()] += 1

    def _count_item(self, result):
        """One item of a loop task that ran: a module call of its own."""
        if self._remote(result._task):
            self.counts[result._host.get_name()] += 1

    def v2_runner_item_on_skipped(self, result):
        """A skipped item never reached the target: not a round trip (handled here so that no
        other hook counts it; its result does not always carry skipped=true)."""
        return None

    v2_runner_on_ok = _count
    v2_runner_on_failed = _count
    v2_runner_on_unreachable = _count
    v2_runner_item_on_ok = _count_item
    v2_runner_item_on_failed = _count_item

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('VFIO_AVIC_ROUNDTRIPS_FILE')
        if path:
            with open(path, 'w') as handle:
                json.dump(dict(self.counts), handle)
