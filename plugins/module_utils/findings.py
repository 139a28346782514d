# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Findings: the one shape every AVIC rule reports in, and its vocabulary.

A finding is a plain dict ``{id, severity, message, fix}``. ``id`` comes from
``FINDING_IDS`` (stable: playbooks and users match on it), ``severity`` is one of
``SEVERITIES``. Messages say where a rule comes from: "known" for rules read in
kernel, QEMU or libvirt sources or documentation, "reported" for rules that rest
on user reports only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

INHIBIT = 'inhibit'
WARNING = 'warning'
INFO = 'info'
SEVERITIES = (INHIBIT, WARNING, INFO)

# id -> (scope, one-line meaning). Scope is 'host', 'kernel' or 'domain'.
FINDING_IDS = {
    # host level (avic_facts)
    'not_amd': ('host', 'not an AMD/Hygon CPU: AVIC does not apply (Intel has APICv)'),
    'cpu_unknown': ('host', '/proc/cpuinfo could not be read or classified'),
    'kernel_unparseable': ('host', 'the running kernel release could not be read or parsed: no kernel rule was applied'),
    'svm_unavailable': ('host', 'SVM is not available (firmware setting, or a VM without nested SVM)'),
    'npt_unavailable': ('host', 'the CPU does not advertise nested paging, which AVIC needs'),
    'avic_cpuid_hidden': ('host', 'AVIC is not advertised in CPUID; only force_avic can enable it'),
    'no_avic_hardware': ('host', 'AMD family before Zen: no AVIC hardware, force_avic cannot help'),
    'vm_no_avic': ('host', 'a VM with nested SVM: KVM does not virtualise AVIC for its guests'),
    'kvm_amd_not_loaded': ('host', 'the kvm_amd module is not loaded'),
    'avic_disabled': ('host', 'kvm_amd runs with AVIC off'),
    'npt_disabled': ('host', 'kvm_amd runs with nested paging off'),
    'avic_forced': ('host', 'AVIC is forced on with force_avic (taints the kernel)'),
    'nested_enabled': ('host', 'kvm_amd exposes SVM to guests (nested=1)'),
    'pending_reload': ('host', 'kvm_amd options on disk differ from what the running module uses'),
    'ipiv_erratum': ('host', 'AVIC IPI virtualisation is off on this CPU (erratum #1235)'),
    'ipiv_erratum_live': ('host', 'erratum #1235 is live: IPI virtualisation on, a kernel without the workaround'),
    'device_posted_irqs_off': ('host', 'kvm_amd enable_device_posted_irqs=N: no IOMMU AVIC for passed-through devices'),
    'iommu_vapic_snp_off': ('host', 'SEV-SNP host: the IOMMU forced guest vAPIC (IOMMU AVIC) off'),
    'avic_snp_hvinusewr': ('host', 'SEV-SNP host without HvInUseWrAllowed: kvm_amd keeps AVIC off'),
    'x2avic_fw_bug': ('host', 'firmware advertises x2AVIC but not AVIC: x2AVIC cannot be used'),
    'iommu_avic_off': ('host', 'IOMMU interrupt remapping in guest vAPIC mode is turned off'),
    'amd_iommu_on_noop': ('host', 'amd_iommu=on is on the command line: not an AMD IOMMU option, it does nothing'),
    'iommu_disabled': ('host', 'amd_iommu=off is on the command line: no IOMMU, so no IOMMU AVIC and no passthrough'),
    'in_container': ('host', 'running in a container: kernel state belongs to the container host'),
    # kernel rules (rules/kernel)
    'kernel_too_old': ('kernel', 'kernel older than 4.7: no SVM AVIC'),
    'kernel_split_irqchip_only': ('kernel', 'kernel older than 5.6: AVIC needs split irqchip'),
    'kernel_known_issue': ('kernel', 'kernel in a range with a known or reported AVIC problem'),
    'kernel_nested_inhibits': ('kernel', 'kernel older than 5.19: a nested-capable setup inhibits AVIC'),
    'kernel_no_x2avic': ('kernel', 'kernel older than 6.0: no x2AVIC, x2APIC guests lose AVIC'),
    'kernel_avic_auto': ('kernel', 'kernel 6.18 or later: avic=auto is the default'),
    'kernel_patch_unknown': ('kernel', 'distribution kernel whose upstream patch level is not known'),
    # domain audit (rules/domain)
    'domain_not_kvm': ('domain', 'the domain does not use KVM, so AVIC does not apply'),
    'cpu_mode_not_host': ('domain', 'guest CPU is not host-passthrough or host-model'),
    'x2apic_exposed': ('domain', 'x2apic is in guest CPUID where the host cannot keep full AVIC for it'),
    'svm_exposed': ('domain', 'SVM reaches the guest (host CPU mode or explicit feature): NESTED inhibit before 5.19 with nested=1'),
    'pit_reinject': ('domain', "the in-kernel PIT reinjects ticks (no tickpolicy='discard')"),
    'hyperv_synic': ('domain', 'Hyper-V SynIC on without <avic state="on"/>, or on a kernel older than 5.15'),
    'hyperv_stimer': ('domain', 'Hyper-V stimer on (needs SynIC) where that SynIC inhibits AVIC'),
    'hyperv_vapic': ('domain', 'Hyper-V vapic on without hv-avic: Windows is told to use MSR-based EOI/ICR'),
    'hyperv_tlbflush_ipi': ('domain', 'Hyper-V ipi enlightenment on: IPIs become hypercalls (no inhibit)'),
    'hyperv_passthrough': ('domain', 'Hyper-V passthrough mode: every enlightenment, SynIC included'),
    'hypervclock_missing': ('domain', 'Windows guest without the hypervclock timer'),
    'invtsc_missing': ('domain', 'Windows guest without invtsc required'),
    'split_irqchip_required': ('domain', "kernel older than 5.6 and no <ioapic driver='qemu'/>"),
    'too_many_vcpus': ('domain', 'guest APIC IDs beyond what AVIC on this host addresses (254, 511, 4095)'),
    'sev_guest': ('domain', 'SEV, SEV-ES or SEV-SNP guest: AVIC is inhibited (5.19+) or unsupported'),
}


def finding(id_, severity, message, fix=''):
    """Build one finding; refuses ids and severities outside the vocabulary."""
    if id_ not in FINDING_IDS:
        raise ValueError('unknown finding id %r' % (id_,))
    if severity not in SEVERITIES:
        raise ValueError('unknown severity %r for finding %r' % (severity, id_))
    return {'id': id_, 'severity': severity, 'message': message, 'fix': fix}
