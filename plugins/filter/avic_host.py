# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host role filters: the preflight decision (with the owned command-line arguments and whether
avic_cmdline has anything to do), the host's state after activation, and the running-guest guard
before a reload or a reboot. The decisions live in module_utils/plan; these filters only name the
fields as the role's users write them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils.plan import activation as activation_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import cmdline as cmdline_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import modprobe as modprobe_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import preflight as preflight_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError

# What the host role's users write for each field module_utils names.
ROLE_NAMES = {
    'avic': 'avic_host_enabled', 'force_avic': 'avic_host_force_avic',
    'nested': 'avic_host_nested', 'extra_options': 'avic_host_extra_options',
    'allow_no_svm': 'avic_host_allow_no_svm', 'allow_old_kernel': 'avic_host_allow_old_kernel',
    'refuse_known_issues': 'avic_host_refuse_known_issues',
    'args': 'avic_host_iommu_args / avic_host_cmdline_extra', 'iommu_intr': 'avic_host_iommu_intr',
    'remove': 'avic_host_cmdline_remove', 'boot_config': 'avic_host_boot_config',
    'cmdline_extra': 'avic_host_cmdline_extra', 'path': 'avic_host_modprobe_path',
}


def _facts(value, name):
    if not isinstance(value, dict) or 'cpu' not in value:
        raise AnsibleFilterError('vfio.avic.%s expects the vfio_avic fact of vfio.avic.avic_facts, '
                                 'got %r' % (name, type(value).__name__))
    return value


def avic_host_preflight(facts, force_avic=False, allow_no_svm=False, allow_old_kernel=False,
                        refuse_known_issues=False, enabled=True, iommu_args=None, iommu_intr=None,
                        cmdline_extra=None, cmdline_remove=None, boot_config='auto',
                        modprobe_path=None, nested=False, extra_options=None,
                        comment_conflicts=False):
    """configure / report / stop, with reasons and warnings; ``cmdline_args`` the owned kernel
    arguments (``cmdline_remove`` checked against them, so that a bad list stops the role before
    it changes anything), ``cmdline_needed`` whether vfio.avic.avic_cmdline has anything to do,
    ``modprobe`` what vfio.avic.avic_modprobe would return when the facts show ``modprobe_path``
    already as wanted (None: the module runs), ``status`` the host's state where the role stops
    or only reports here."""
    facts = _facts(facts, 'avic_host_preflight')
    try:
        result = preflight_plan.preflight(facts, bool(force_avic), bool(allow_no_svm),
                                          bool(allow_old_kernel), bool(refuse_known_issues),
                                          bool(enabled), ROLE_NAMES)
        args = cmdline_plan.owned_args(iommu_args or [], iommu_intr or None, cmdline_extra or [])
        remove = cmdline_plan.removable_keys(cmdline_remove or [], args)
        settled = None
        if modprobe_path and result['action'] == 'configure':
            options = modprobe_plan.wanted_options(bool(force_avic), bool(nested),
                                                   extra_options or {}, bool(enabled))
            settled = modprobe_plan.settled_from_facts(facts, modprobe_path, options,
                                                       bool(comment_conflicts))
    except PlanError as exc:
        raise AnsibleFilterError(exc.render(ROLE_NAMES))
    result['modprobe'] = settled
    result['cmdline_args'] = args
    result['cmdline_needed'] = cmdline_plan.edit_needed(facts, args, remove, boot_config or 'auto')
    result['status'] = activation_plan.final_state(facts, [], [], preflight_result=result) \
        if result['action'] != 'configure' else None
    return result


def avic_host_state(facts, options, cmdline_args, reloaded=False, preflight=None,
                    next_boot='facts', remove=None, conflicts=None, events=None):
    """The host's state after the role acted, and what activating needs (reload, reboot).

    ``next_boot`` is the registered result of vfio.avic.avic_cmdline (its next_boot line; a
    skipped task means the facts' line), a command line, None (no managed configuration) or
    'facts' (the facts' boot_cmdline). ``events`` are what happened meanwhile (reload_error,
    reload_guests, reboot_skipped, notes, check_mode), added to the reasons.
    """
    facts = _facts(facts, 'avic_host_state')
    if isinstance(options, dict):
        options = sorted(options.items())
    ran = isinstance(next_boot, dict) and next_boot.get('target') and not next_boot.get('skipped')
    if next_boot == 'facts' or isinstance(next_boot, dict):
        line = cmdline_plan.next_boot_line(facts, next_boot['target'] if ran else None,
                                           next_boot.get('next_boot') if ran else None)
    else:
        line = next_boot
    target = next_boot['target'] if ran else (facts.get('boot_cmdline') or {}).get('target')
    return activation_plan.final_state(facts, list(options or []), list(cmdline_args or []),
                                       bool(reloaded), preflight, next_boot=line,
                                       remove_keys=[r.partition('=')[0] for r in remove or []],
                                       winning_conflicts=[c for c in conflicts or [] if c.get('wins')],
                                       target=target, names=ROLE_NAMES, events=events)


def avic_host_reboot_guard(guests, libvirt_running=None, shutdown=False, container=None,
                           check_mode=False, shutdown_option=None):
    """proceed / shutdown / skip / report, from the guests read right before going down."""
    if guests is not None and not isinstance(guests, list):
        raise AnsibleFilterError('vfio.avic.avic_host_reboot_guard expects the guests list of '
                                 'vfio.avic.avic_facts, got %r' % type(guests).__name__)
    if isinstance(libvirt_running, str):
        libvirt_running = [n.strip() for n in libvirt_running.splitlines() if n.strip()]
    return activation_plan.reboot_guard(list(guests or []), libvirt_running, bool(shutdown),
                                        container or None, bool(check_mode),
                                        {'shutdown_guests': shutdown_option} if shutdown_option else None)


class FilterModule(object):
    """Host role filters."""

    def filters(self):
        return {
            'avic_host_preflight': avic_host_preflight,
            'avic_host_state': avic_host_state,
            'avic_host_reboot_guard': avic_host_reboot_guard,
        }
