# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight: whether to configure a host, stop it or only report, from its vfio_avic fact
(stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError, say
from ansible_collections.vfio.avic.plugins.module_utils.rules import host as host_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules

# The fields preflight() and its errors name (what the caller's user calls them: errors.say()).
FIELDS = ('avic', 'force_avic', 'allow_no_svm', 'allow_old_kernel', 'refuse_known_issues')


def contradiction():
    """The error for force_avic on with AVIC off (both the preflight and the options refuse it)."""
    return PlanError('{force_avic}: true and {avic}: false contradict each other: force_avic '
                     'turns AVIC on; set one of them', ('force_avic', 'avic'))


def preflight(facts, force_avic=False, allow_no_svm=False, allow_old_kernel=False,
              refuse_known_issues=False, enabled=True, names=None):
    """Decide from the vfio_avic fact: {action, state, reasons, warnings}.

    action is ``configure`` (write the AMD settings), ``report`` (nothing to do here: Intel or
    unknown vendor; the report says why) or ``stop`` (fail this host with the reasons).
    ``enabled=False`` (AVIC off on purpose) configures avic=0 whatever the CPU offers. The
    reasons name the fields (force_avic, allow_no_svm, allow_old_kernel, refuse_known_issues,
    avic for ``enabled``) as ``names`` maps them (errors.say()).
    """
    if force_avic and not enabled:
        raise contradiction()
    cpu = facts.get('cpu') or {}
    status = cpu.get('status')
    reasons, warnings = [], []
    if cpu.get('vendor') in ('intel', 'unknown') or status == 'unsupported_vendor':
        apicv = (facts.get('kvm_intel') or {}).get('enable_apicv')
        if cpu.get('vendor') == 'intel':
            reasons.append('Intel CPU: AVIC is AMD-only; kvm_intel APICv is %s.' % (
                'on' if apicv else 'off' if apicv is False else 'unknown (kvm_intel not loaded)'))
        else:
            reasons.append(cpu.get('message') or 'The CPU vendor is not AMD or Hygon.')
        return {'action': 'report', 'state': 'unsupported', 'reasons': reasons, 'warnings': []}
    if status == 'svm_unavailable' and not allow_no_svm:
        reasons.append('%s Enable SVM (AMD-V) in the firmware setup, or nested SVM on the '
                       'hypervisor if this host is a VM; set %s: true to '
                       'configure the files anyway.' % (cpu.get('message') or 'SVM is not available.',
                                                        say(names, 'allow_no_svm')))
        return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
    if status == 'cpuid_hidden' and enabled:
        if not force_avic:
            reasons.append(
                '%s AVIC can only be turned on with kvm_amd force_avic=1, which is unsupported by '
                'AMD and taints the kernel; set %s: true to accept that.'
                % (cpu.get('message') or 'The CPU does not advertise AVIC in CPUID.',
                   say(names, 'force_avic')))
            return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
        warnings.append('force_avic=1 is set: AVIC runs although CPUID does not advertise it; '
                        'unsupported, and the kernel is tainted (flag 64).')
    if status == 'no_avic_hardware' and enabled:
        reasons.append('%s Keep AVIC off here (%s: false) or leave this host out; '
                       '%s cannot help.'
                       % (cpu.get('message') or 'The CPU has no AVIC hardware.', say(names, 'avic'),
                          say(names, 'force_avic')))
        return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
    if status == 'vm_no_avic' and enabled:
        if not force_avic:
            reasons.append('%s For testing only, set %s: true to accept that.'
                           % (cpu.get('message') or 'This VM has no AVIC.', say(names, 'force_avic')))
            return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
        warnings.append('force_avic=1 is set in a VM without AVIC: for testing only; unsupported, '
                        'the kernel is tainted (flag 64) and there is no real acceleration.')
    release = facts.get('kernel')
    erratum = host_rules.erratum_1235_finding(
        cpu, release, (facts.get('kvm_amd') or {}).get('parameters')) if enabled else None
    if erratum and erratum['severity'] == 'warning':
        warnings.append('%s %s' % (erratum['message'], erratum['fix']))
    if release:
        try:
            issues = kernel_rules.kernel_issues(release, facts.get('kernel_upstream'))
        except kernel_rules.KernelReleaseError as exc:
            issues = []
            warnings.append(str(exc))
        for item in issues:
            if item['id'] == 'kernel_too_old' and not allow_old_kernel:
                reasons.append('%s Install a newer kernel (vfio.avic.kernel), or set '
                               '%s: true.' % (item['message'], say(names, 'allow_old_kernel')))
            elif item['id'] == 'kernel_known_issue' and refuse_known_issues:
                reasons.append('%s Set %s: false to go on.' % (item['message'],
                                                               say(names, 'refuse_known_issues')))
            elif item['severity'] != 'info':
                warnings.append(item['message'])
    if reasons:
        return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': warnings}
    return {'action': 'configure', 'state': None, 'reasons': [], 'warnings': warnings}
