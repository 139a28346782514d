# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vfio.avic.avic_report_files: write the fleet report's JSON and Markdown files on the controller,
in the controller's own process (no module is sent anywhere); documented in modules/."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action import ActionBase

from ansible_collections.vfio.avic.plugins.plugin_utils import report as reporting

REPORT_KEYS = ('rows', 'records', 'totals')


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('dir', 'name', 'report'))  # ActionBase refuses any other option
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        directory, report = args.get('dir'), args.get('report')
        name = args.get('name') or 'avic-report'
        error = None
        if not directory:
            error = 'dir is required: the directory on the controller for the report files'
        elif not name or '/' in str(name):
            error = 'name must be a file name without a directory, got %r' % (name,)
        elif not hasattr(report, 'get') or any(key not in report for key in REPORT_KEYS):
            error = ('report must be the result of vfio.avic.avic_fleet_report (with %s), got %s'
                     % (', '.join(REPORT_KEYS), type(report).__name__))
        if error:
            result.update(failed=True, changed=False, msg=error)
            return result
        try:
            directory = os.path.abspath(os.path.expanduser(str(directory)))
            paths = reporting.write_report_files(directory, str(name), report)
        except (IOError, OSError) as exc:
            result.update(failed=True, changed=False,
                          msg='cannot write the report in %s: %s' % (directory, exc.strerror or exc))
            return result
        # the report is output, like the terminal table: writing it is not a change of the fleet
        result.update(changed=False, paths=paths)
        return result
