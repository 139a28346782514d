# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to the roles of this collection, not public API: the filters through which the host,
kernel, guest and _reboot roles reach module_utils on the controller. Their names and arguments
change with the roles; playbooks use the public filters (avic.py, avic_qemu.py, avic_report.py).

Private twice over: each name starts with an underscore (vfio.avic._host_state), and the file
name starts with two, so that ansible-doc does not list them (it skips such files as Python
internals; ansible-core 2.16 to 2.21 resolve the filters all the same). They have no
documentation files. Their former public names (avic_host_state, ...) are deprecated redirects in
meta/runtime.yml.

The decisions live in module_utils; these filters name the fields as the roles' users write them
(HOST_ROLE_NAMES, KERNEL_ROLE_NAMES), so that every error names the role variable.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_new
from ansible_collections.vfio.avic.plugins.module_utils.plan import activation as activation_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import cmdline as cmdline_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_select
from ansible_collections.vfio.avic.plugins.module_utils.plan import modprobe as modprobe_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import preflight as preflight_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules

# What the host role's users write for each field module_utils names.
HOST_ROLE_NAMES = {
    'avic': 'avic_host_enabled', 'force_avic': 'avic_host_force_avic',
    'nested': 'avic_host_nested', 'extra_options': 'avic_host_extra_options',
    'allow_no_svm': 'avic_host_allow_no_svm', 'allow_old_kernel': 'avic_host_allow_old_kernel',
    'refuse_known_issues': 'avic_host_refuse_known_issues',
    'args': 'avic_host_iommu_args / avic_host_cmdline_extra', 'iommu_intr': 'avic_host_iommu_intr',
    'remove': 'avic_host_cmdline_remove', 'boot_config': 'avic_host_boot_config',
    'cmdline_extra': 'avic_host_cmdline_extra', 'path': 'avic_host_modprobe_path',
}

# The kernel role's variables for the fields the kernel plan names in its messages.
KERNEL_ROLE_NAMES = {'mode': 'avic_kernel_mode', 'version': 'avic_kernel_version',
                     'minimum': 'avic_kernel_min_version', 'allow_old': 'avic_kernel_allow_old',
                     'refuse_known_issues': 'avic_kernel_refuse_known_issues', 'pin': 'avic_kernel_pin'}


def _facts(value, name):
    if not isinstance(value, dict) or 'cpu' not in value:
        raise AnsibleFilterError('vfio.avic.%s expects the vfio_avic fact of vfio.avic.avic_facts, '
                                 'got %r' % (name, type(value).__name__))
    return value


# The host role (tasks/preflight.yml, activate.yml, verify.yml).

def host_preflight(facts, force_avic=False, allow_no_svm=False, allow_old_kernel=False,
                   refuse_known_issues=False, enabled=True, iommu_args=None, iommu_intr=None,
                   cmdline_extra=None, cmdline_remove=None, boot_config='auto',
                   modprobe_path=None, nested=False, extra_options=None,
                   comment_conflicts=False):
    """Internal to the host role. ``action`` configure / report / stop from the vfio_avic fact,
    with ``state``, ``reasons`` (each stop names the variable that overrides it) and ``warnings``;
    ``cmdline_args`` the owned kernel arguments (``cmdline_remove`` checked against them, so that a
    bad list stops the role before it changes anything), ``cmdline_needed`` whether
    vfio.avic.avic_cmdline has anything to do, ``modprobe`` what vfio.avic.avic_modprobe would
    return when the facts show ``modprobe_path`` already as wanted (None: the module runs),
    ``status`` the host's state where the role stops or only reports here."""
    facts = _facts(facts, '_host_preflight')
    try:
        result = preflight_plan.preflight(facts, bool(force_avic), bool(allow_no_svm),
                                          bool(allow_old_kernel), bool(refuse_known_issues),
                                          bool(enabled), HOST_ROLE_NAMES)
        args = cmdline_plan.owned_args(iommu_args or [], iommu_intr or None, cmdline_extra or [])
        remove = cmdline_plan.removable_keys(cmdline_remove or [], args)
        settled = None
        if modprobe_path and result['action'] == 'configure':
            options = modprobe_plan.wanted_options(bool(force_avic), bool(nested),
                                                   extra_options or {}, bool(enabled))
            settled = modprobe_plan.settled_from_facts(facts, modprobe_path, options,
                                                       bool(comment_conflicts))
    except PlanError as exc:
        raise AnsibleFilterError(exc.render(HOST_ROLE_NAMES))
    result['modprobe'] = settled
    result['cmdline_args'] = args
    result['cmdline_needed'] = cmdline_plan.edit_needed(facts, args, remove, boot_config or 'auto')
    result['status'] = activation_plan.final_state(facts, [], [], preflight_result=result) \
        if result['action'] != 'configure' else None
    return result


def host_state(facts, options, cmdline_args, reloaded=False, preflight=None,
               next_boot='facts', remove=None, conflicts=None, events=None):
    """Internal to the host role. The host's state after the role acted (``state`` active,
    pending_reload, pending_reboot, disabled, failed or unsupported, with ``reasons`` and
    ``warnings``), and what activating needs (``reload_needed``, ``cmdline_pending``,
    ``reboot_needed``: true only when a reboot would apply something).

    ``options`` the kvm_amd options written (vfio.avic.avic_modprobe), ``cmdline_args`` the owned
    arguments of the preflight. ``next_boot`` is the registered result of vfio.avic.avic_cmdline
    (its next_boot line; a skipped task means the facts' line), a command line, None (no managed
    configuration) or 'facts' (the facts' boot_cmdline). ``conflicts`` those of avic_modprobe (the
    winning ones keep a reboot from applying the options). ``events`` are what happened meanwhile
    (reload_error, reload_guests, reboot_skipped, notes, check_mode), added to the reasons.
    """
    facts = _facts(facts, '_host_state')
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
                                       target=target, names=HOST_ROLE_NAMES, events=events)


# The _reboot role (tasks/guests.yml), for the host and kernel roles.

def host_reboot_guard(guests, libvirt_running=None, shutdown=False, container=None,
                      check_mode=False, shutdown_option=None):
    """Internal to the _reboot role. ``action`` proceed / shutdown / skip / report (with
    ``shutdown``, ``guests``, ``reason``), from the QEMU processes (vfio_avic.guests) and the names
    virsh lists as running (text or list; None when libvirt could not be asked), read right before
    going down. ``shutdown_option`` is the caller's name of the option that allows shutting guests
    down, named in the reason when guests keep the host up."""
    if guests is not None and not isinstance(guests, list):
        raise AnsibleFilterError('vfio.avic._host_reboot_guard expects the guests list of '
                                 'vfio.avic.avic_facts, got %r' % type(guests).__name__)
    if isinstance(libvirt_running, str):
        libvirt_running = [n.strip() for n in libvirt_running.splitlines() if n.strip()]
    return activation_plan.reboot_guard(list(guests or []), libvirt_running, bool(shutdown),
                                        container or None, bool(check_mode),
                                        {'shutdown_guests': shutdown_option} if shutdown_option else None)


# The kernel role (tasks/select.yml).

def kernel_keep_plan(facts, minimum='5.6', allow_old=False, refuse_known_issues=False):
    """Internal to the kernel role. The keep-mode plan from the vfio_avic fact (Debian family:
    running kernel, installed packages and their holds), what vfio.avic.avic_kernel_select would
    return, without its round trip; fails with the reason (naming the role variable) when the
    running kernel is below the minimum or refused for a known issue."""
    if not isinstance(facts, dict) or 'os' not in facts:
        raise AnsibleFilterError('vfio.avic._kernel_keep_plan expects the vfio_avic fact of '
                                 'vfio.avic.avic_facts')
    try:
        return kernel_select.keep_plan(facts, str(minimum), bool(allow_old), bool(refuse_known_issues),
                                       KERNEL_ROLE_NAMES)
    except kernel_select.PlanError as exc:
        raise AnsibleFilterError(str(exc))


# The guest role (tasks/new.yml, report.yml).

def domain_xml(spec):
    """Internal to the guest role. Libvirt domain XML for one avic_guest_new spec (values escaped
    by ElementTree); vfio.avic.avic_domain then applies the AVIC settings of the host."""
    try:
        return domain_new.build(dict(spec) if spec is not None else None)
    except (domain_new.SpecError, TypeError, ValueError) as exc:
        raise AnsibleFilterError('avic_guest_new: %s' % exc)


def _ids(findings):
    return [f['id'] for f in findings or [] if isinstance(f, dict) and 'id' in f]


def guest_entry(result):
    """One avic_guest_report entry from a vfio.avic.avic_domain loop result."""
    name = (result.get('item') or {}).get('name') or result.get('invocation', {}).get('module_args', {}).get('name')
    if result.get('failed'):
        return {'name': name, 'state': 'error', 'changed': False, 'active': False,
                'findings_before': [], 'findings_after': [], 'reasons': [result.get('msg', 'failed')],
                'backup': None, 'line': '%s: error: %s' % (name, result.get('msg', 'failed'))}
    after = result.get('findings_after') or []
    inhibits = [f for f in after if f.get('severity') == 'inhibit']
    if result.get('restart_required'):
        state = 'restart_required'
    else:
        state = domain_rules.verdict(after)
    reasons = ['%s: %s' % (f['id'], f['message']) for f in inhibits] + list(result.get('notes') or [])
    if state == 'restart_required':
        reasons.insert(0, 'running with the old definition: restart it to apply the fix')
    fixed = [i for i in _ids(result.get('findings_before')) if i not in _ids(after)]
    line = '%s: %s' % (name, state.replace('_', ' '))
    if fixed:
        line += ' (fixed %s)' % ', '.join(fixed)
    if inhibits:
        line += '; still inhibited by %s' % ', '.join(_ids(inhibits))
    return {'name': name, 'state': state, 'changed': bool(result.get('changed')),
            'active': bool(result.get('active')), 'defined': bool(result.get('defined')),
            'restarted': bool(result.get('restarted')),
            'findings_before': _ids(result.get('findings_before')), 'findings_after': _ids(after),
            'reasons': reasons, 'backup': result.get('backup'), 'line': line}


def guest_report(results):
    """Internal to the guest role. The role's avic_guest_report from the registered loop results
    of vfio.avic.avic_domain: one entry per guest (ready, restart_required, inhibited,
    not_applicable or error; see guest_entry)."""
    if not isinstance(results, list):
        raise AnsibleFilterError('vfio.avic._guest_report expects the results list of a registered '
                                 'loop of vfio.avic.avic_domain, got %s' % type(results).__name__)
    return [guest_entry(r) for r in results if isinstance(r, dict) and not r.get('skipped')]


class FilterModule(object):
    """The roles' internal filters (not public API)."""

    def filters(self):
        return {
            '_host_preflight': host_preflight,
            '_host_state': host_state,
            '_host_reboot_guard': host_reboot_guard,
            '_kernel_keep_plan': kernel_keep_plan,
            '_domain_xml': domain_xml,
            '_guest_report': guest_report,
        }
