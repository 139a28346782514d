# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host role filters: preflight decision, owned command-line arguments, final state."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils import avic_hostplan


def _facts(value, name):
    if not isinstance(value, dict) or 'cpu' not in value:
        raise AnsibleFilterError('vfio.avic.%s expects the vfio_avic fact of vfio.avic.avic_facts, '
                                 'got %r' % (name, type(value).__name__))
    return value


def avic_host_preflight(facts, force_avic=False, allow_no_svm=False, allow_old_kernel=False,
                        refuse_known_issues=False):
    """configure / report / stop, with reasons and warnings."""
    return avic_hostplan.preflight(_facts(facts, 'avic_host_preflight'), bool(force_avic),
                                   bool(allow_no_svm), bool(allow_old_kernel), bool(refuse_known_issues))


def avic_host_cmdline_args(iommu_args, iommu_intr=None, extra_args=None):
    """The kernel arguments the host role owns."""
    try:
        return avic_hostplan.owned_args(iommu_args or [], iommu_intr or None, extra_args or [])
    except avic_hostplan.PlanError as exc:
        raise AnsibleFilterError(str(exc))


def avic_host_state(facts, options, cmdline_args, cmdline_changed=False, reloaded=False,
                    preflight=None):
    """avic_host_status after the role acted."""
    if isinstance(options, dict):
        options = sorted(options.items())
    return avic_hostplan.final_state(_facts(facts, 'avic_host_state'), list(options or []),
                                     list(cmdline_args or []), bool(cmdline_changed), bool(reloaded),
                                     preflight)


def avic_host_cmdline_needed(facts, args, remove=None, target='auto'):
    """Whether vfio.avic.avic_cmdline has anything to do, judged from the facts' configured line.

    True when the module must run (the line would change, or the facts cannot tell: grubby, an
    explicit target other than the one found, an unreadable file); False when every owned argument
    is already there exactly once and nothing is to be removed.
    """
    boot = _facts(facts, 'avic_host_cmdline_needed').get('boot_cmdline') or {}
    if boot.get('target') in (None, 'grubby') or target not in ('auto', boot.get('target')):
        return True
    if boot.get('target') == 'none':
        return False
    return avic_hostplan.cmdline_needs_change(boot.get('value'), list(args or []),
                                              [r.partition('=')[0] for r in remove or []]) is not False


class FilterModule(object):
    """Host role filters."""

    def filters(self):
        return {
            'avic_host_preflight': avic_host_preflight,
            'avic_host_cmdline_args': avic_host_cmdline_args,
            'avic_host_state': avic_host_state,
            'avic_host_cmdline_needed': avic_host_cmdline_needed,
        }
