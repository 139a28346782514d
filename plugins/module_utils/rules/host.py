# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-level AVIC rules: the findings of a host from its facts, and the running module's
options against the configured ones (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.findings import (
    INFO, INHIBIT, WARNING, finding)
from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules


def pending_differences(loaded, wanted):
    """Parameters whose running value differs from the configured one.

    ``loaded`` holds sysfs strings ('Y', '0'), ``wanted`` configured strings.
    Values are compared as booleans where both are booleans, else as text.
    """
    diffs = {}
    for key, want in sorted(wanted.items()):
        if key not in loaded:
            continue
        have = loaded[key]
        wb, hb = parse_bool(want), parse_bool(have)
        same = (wb == hb) if (wb is not None and hb is not None) else \
            str(want).strip() == str(have).strip()
        if not same:
            diffs[key] = {'configured': want, 'running': have}
    return diffs


def _cpu_findings(cpu, out):
    status = cpu.get('status')
    if cpu.get('vendor') == 'unknown':
        out.append(finding('cpu_unknown', WARNING, cpu.get('message', ''),
                           'Check that /proc/cpuinfo is readable on the host.'))
        return False
    if status == 'unsupported_vendor':
        out.append(finding('not_amd', INFO, cpu.get('message', ''), ''))
        return False
    if status == 'svm_unavailable':
        out.append(finding(
            'svm_unavailable', INHIBIT, cpu.get('message', ''),
            'Enable SVM (AMD-V) in the firmware setup; for a VM, enable nested SVM on its host.'))
        return False
    if not cpu.get('npt'):
        out.append(finding(
            'npt_unavailable', INHIBIT,
            'The CPU does not advertise nested paging (npt); AVIC needs it (known, AMD APM).',
            'Enable NPT/RVI (for a VM: expose npt to it).'))
    return True


def _kernel_findings(release, upstream, out, cpu=None):
    """Append the kernel rules' findings; returns the kernel's capabilities, or None."""
    try:
        out.extend(kernel_rules.kernel_issues(release, upstream, cpu))
        return kernel_rules.capabilities(release)
    except kernel_rules.KernelReleaseError as exc:
        out.append(finding(
            'kernel_unparseable', WARNING,
            'The running kernel release is not usable: %s. No kernel rule (minimum version, split '
            'irqchip, nested, x2AVIC) was applied to this host.' % exc,
            'Check that "uname -r" prints a release like 6.1.0-26-amd64 on the host.'))
        return None


def erratum_1235_finding(cpu, release, params):
    """Erratum #1235 (AMD family 17h, Hygon 18h): IPI virtualisation misses wake-ups.

    The finding for a CPU with the erratum, given the kernel release and the kvm_amd
    parameters read from sysfs (enable_ipiv is there from 6.17): ``ipiv_erratum`` (info)
    where IPI virtualisation is off, ``ipiv_erratum_live`` (warning) where it is on or the
    kernel predates the workaround, None otherwise.
    """
    if not cpu.get('erratum_1235'):
        return None
    ipiv = parse_bool((params or {}).get('enable_ipiv'))
    if ipiv is False:
        return finding(
            'ipiv_erratum', INFO,
            'AVIC IPI virtualisation is off (kvm_amd enable_ipiv=N): the kernel turns it off on Zen '
            '1/Zen 2 and Hygon because of erratum #1235 (known). Interrupts are still accelerated.',
            '')
    try:
        workaround = kernel_rules.erratum_1235_workaround(release, cpu.get('vendor'), cpu.get('family'))
    except kernel_rules.KernelReleaseError:
        workaround = None
    if ipiv is None and workaround is not False:
        return None
    return finding(
        'ipiv_erratum_live', WARNING,
        'AVIC runs with IPI virtualisation on a CPU with erratum #1235 (AMD family 17h, Hygon '
        'family 18h)%s: the CPU can miss that a vCPU stopped running, so a blocked vCPU misses its '
        'wake-up and the guest stalls (known).' % (
            ', and kernel %s predates the workaround' % release if workaround is False else ''),
        'Use a kernel with the workaround (AMD family 17h: 6.17 or later; Hygon family 18h: 7.1, or '
        '6.18.35 or later), or, where kvm_amd has enable_ipiv (6.17 or later), set options kvm_amd '
        'enable_ipiv=0 (vfio.avic.host: avic_host_extra_options: {enable_ipiv: 0}).')


def _dmesg_findings(dmesg, out):
    """Findings from the kernel log lines gather_facts.parse_dmesg() recognised."""
    if not dmesg:
        return
    if dmesg.get('avic_snp_hvinusewr'):
        out.append(finding(
            'avic_snp_hvinusewr', INHIBIT,
            'The kernel log says "AVIC disabled: missing HvInUseWrAllowed on SNP-enabled system": '
            'on an SEV-SNP host whose CPU lacks HvInUseWrAllowed, kvm_amd keeps AVIC off (known).',
            'Turn SEV-SNP off in the firmware to use AVIC, or accept AVIC off on this host.'))
    if dmesg.get('iommu_vapic_snp_off'):
        out.append(finding(
            'iommu_vapic_snp_off', INFO,
            'The kernel log says "AMD-Vi: Force to disable Virtual APIC due to SNP": with SEV-SNP '
            'on and an IOMMU without SNP support for guest vAPIC, IOMMU AVIC is off (known).',
            'Turn SEV-SNP off in the firmware to get IOMMU AVIC back.'))
    if dmesg.get('x2avic_fw_bug'):
        out.append(finding(
            'x2avic_fw_bug', WARNING,
            'The kernel log has a firmware bug line "Cannot enable x2AVIC": the firmware advertises '
            'x2AVIC but hides AVIC in CPUID, so neither is used (known).',
            'Update the firmware, or enable AVIC in its setup; force_avic=1 is the unsupported '
            'alternative.'))


def host_findings(facts):
    """Host-level findings from an avic_facts dict (cpu, kernel, kvm_amd, modprobe, ...)."""
    out = []
    cpu = facts.get('cpu') or {}
    amd = _cpu_findings(cpu, out)
    release = facts.get('kernel')
    caps = None
    if amd:
        caps = _kernel_findings(release, facts.get('kernel_upstream'), out, cpu)
    if facts.get('container'):
        out.append(finding(
            'in_container', INFO,
            'Running in a %s container: kvm_amd and the kernel belong to the container host; '
            'files are checked, kernel state is not authoritative.' % facts['container'], ''))
    if not amd:
        return out
    kvm = facts.get('kvm_amd') or {}
    params = kvm.get('parameters') or {}
    forced = parse_bool(params.get('force_avic'))
    if cpu.get('status') == 'cpuid_hidden' and not forced:
        out.append(finding(
            'avic_cpuid_hidden', INHIBIT, cpu.get('message', ''),
            'Set kvm_amd force_avic=1 (vfio.avic.host: avic_host_force_avic: true) if you accept '
            'an unsupported, kernel-tainting mode.'))
    if cpu.get('status') == 'no_avic_hardware':
        out.append(finding(
            'no_avic_hardware', INHIBIT, cpu.get('message', ''),
            'AVIC needs an AMD Zen (family 0x17) or later CPU; keep avic off on this host.'))
    if cpu.get('status') == 'vm_no_avic' and not forced:
        out.append(finding(
            'vm_no_avic', INHIBIT, cpu.get('message', ''),
            'Use AVIC on the physical host instead. Only for testing: kvm_amd force_avic=1 '
            '(vfio.avic.host: avic_host_force_avic: true).'))
    if not kvm.get('loaded'):
        out.append(finding(
            'kvm_amd_not_loaded', WARNING,
            'The kvm_amd module is not loaded: no KVM guests can run and AVIC state is unknown.',
            'Load it (modprobe kvm_amd) or apply the vfio.avic.host role.'))
    else:
        avic = parse_bool(params.get('avic'))
        if avic is False:
            out.append(finding(
                'avic_disabled', INHIBIT,
                'kvm_amd runs with avic=%s: AVIC is off for every guest (DISABLED).'
                % params.get('avic'),
                'Set options kvm_amd avic=1 and reload the module (vfio.avic.host does both).'))
        if parse_bool(params.get('npt')) is False:
            out.append(finding(
                'npt_disabled', INHIBIT, 'kvm_amd runs with npt=0: AVIC needs nested paging (known).',
                'Set options kvm_amd npt=1 and reload the module.'))
        if forced:
            out.append(finding(
                'avic_forced', WARNING,
                'kvm_amd runs with force_avic=1: AVIC is on although CPUID does not advertise it; '
                'unsupported, and the kernel is tainted (known).', ''))
        if parse_bool(params.get('nested')):
            severity = INFO if caps and caps['nested_coexist'] else INHIBIT
            out.append(finding(
                'nested_enabled', severity,
                'kvm_amd runs with nested=1 (SVM offered to guests). %s' % (
                    'This kernel lets AVIC coexist with nested guests (known); a guest that runs '
                    'its own guests still loses AVIC while it does.' if severity == INFO else
                    'Before 5.19 a nested-capable setup inhibits AVIC (known).'),
                'Set options kvm_amd nested=0 unless guests run their own VMs.'))
        erratum = erratum_1235_finding(cpu, release, params) if avic else None
        if erratum:
            out.append(erratum)
        if avic and parse_bool(params.get('enable_device_posted_irqs')) is False:
            out.append(finding(
                'device_posted_irqs_off', INFO,
                'kvm_amd reads enable_device_posted_irqs=N: KVM does not post interrupts of '
                'passed-through devices into guests (no IOMMU AVIC). The kernel sets it only with '
                'AVIC on and an IOMMU that can post interrupts (guest vAPIC mode) (known, 6.16+).',
                'Check that amd_iommu_intr is not legacy, that the IOMMU is on in the firmware, and '
                'that the kernel log has "AMD-Vi: Virtual APIC enabled".'))
        diffs = (facts.get('pending') or {})
        if diffs:
            out.append(finding(
                'pending_reload', WARNING,
                'The kvm_amd options on disk differ from the running module: %s.' % ', '.join(
                    '%s configured %s, running %s' % (k, v['configured'], v['running'])
                    for k, v in sorted(diffs.items())),
                'Reload kvm_amd while no guest runs, or reboot.'))
    _dmesg_findings(facts.get('dmesg'), out)
    iommu = facts.get('iommu') or {}
    if iommu.get('amd_iommu_intr') == 'legacy':
        out.append(finding(
            'iommu_avic_off', INFO,
            'amd_iommu_intr=legacy is on the kernel command line: IOMMU AVIC (guest vAPIC mode) is '
            'off, so passed-through devices do not post interrupts into guests (known).',
            'Remove amd_iommu_intr=legacy (vapic is the default where supported).'))
    amd_iommu = [cmdline_parse.cmdline_value([a], 'amd_iommu')
                 for a in cmdline_parse.split_args(facts.get('cmdline'))]
    if any('off' in (v or '').split(',') for v in amd_iommu):
        out.append(finding(
            'iommu_disabled', WARNING,
            'amd_iommu=off is on the kernel command line: the AMD IOMMU is disabled, so there is no '
            'IOMMU AVIC (posted interrupts of passed-through devices) and no device passthrough '
            '(known, drivers/iommu/amd/init.c).',
            'Remove it (vfio.avic.host: avic_host_cmdline_remove: [amd_iommu]) unless the IOMMU is '
            'off on purpose.'))
    if 'on' in amd_iommu:
        out.append(finding(
            'amd_iommu_on_noop', INFO,
            'amd_iommu=on is on the kernel command line, but "on" is not an option of the AMD IOMMU '
            'driver (drivers/iommu/amd/init.c parse_amd_iommu_options takes fullflush, off, '
            'force_isolation, force_enable, pgtbl_v1/v2, ...; newer kernels log "Unknown option"): '
            'it does nothing, the AMD IOMMU is on by default (known).',
            'Remove it (vfio.avic.host: avic_host_cmdline_remove: [amd_iommu]); keep iommu=pt.'))
    return out


def host_status(facts, findings):
    """One word for the host: active, inactive, unsupported or unknown."""
    cpu = facts.get('cpu') or {}
    if cpu.get('vendor') == 'unknown':
        return 'unknown'
    if cpu.get('status') in ('unsupported_vendor', 'svm_unavailable', 'no_avic_hardware'):
        return 'unsupported'
    if any(f['id'] in ('kernel_too_old', 'npt_unavailable') for f in findings):
        return 'unsupported'
    params = (facts.get('kvm_amd') or {}).get('parameters') or {}
    if (facts.get('kvm_amd') or {}).get('loaded') and parse_bool(params.get('avic')):
        return 'active'
    return 'inactive'
