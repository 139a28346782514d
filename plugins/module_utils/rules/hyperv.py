# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest rules of the Hyper-V enlightenments (stdlib only): what the ``hyperv`` of a Windows
guest's model (mode, synic, stimer, vapic, ipi, avic) does to AVIC on this host.

check_hyperv(summary, host, out) is one of the rules of rules/domain.py RULES and takes the
normalised host as they do; QEMU_HV_AVIC, the first QEMU with hv-avic, is also what the Proxmox VE
fix decides by.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.findings import (
    INFO, INHIBIT, WARNING, finding)
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules

QEMU_HV_AVIC = (6, 2)  # QEMU's hv-avic ("i386: Implement pseudo 'hv-avic' ('hv-apicv') enlightenment")


def synic_inhibits(host, avic_on):
    """Whether a SynIC keeps AVIC off: before 5.15 always (activating SynIC inhibits AVIC
    permanently), from 5.15 only without hv-avic (Windows then uses AutoEOI)."""
    return host['kernel']['version'] < kernel_rules.HYPERV_AUTOEOI or not avic_on


def _check_passthrough(hv, host, out):
    avic_on = hv.get('avic', False)
    release = host['kernel']['release']
    fix = ("Use <hyperv mode='custom'> with the enlightenments listed and without <synic> and "
           "<stimer>.")
    if host['kernel']['version'] < kernel_rules.HYPERV_AUTOEOI:
        out.append(finding(
            'hyperv_passthrough', INHIBIT,
            "Hyper-V mode='passthrough' turns on every enlightenment the host offers, SynIC "
            'included: kernel %s (older than 5.15) inhibits AVIC for the whole VM as soon as SynIC '
            "is activated, <avic state='on'/> or not (known, HYPERV)." % release, fix))
        return
    if avic_on:
        out.append(finding(
            'hyperv_passthrough', INFO,
            "Hyper-V mode='passthrough' with <avic state='on'/>: Windows is told not to use AutoEOI, "
            'so SynIC does not inhibit AVIC on kernel %s (known). Passthrough guests cannot '
            'migrate safely.' % release,
            "Prefer <hyperv mode='custom'> with the enlightenments listed."))
        return
    qemu = host.get('qemu')
    if qemu is not None and qemu >= QEMU_HV_AVIC:
        out.append(finding(
            'hyperv_passthrough', INFO,
            "Hyper-V mode='passthrough' on kernel %s with QEMU %d.%d includes hv-avic (KVM reports "
            'HV_DEPRECATING_AEOI_RECOMMENDED from 5.15), so Windows is told not to use AutoEOI and '
            'SynIC does not inhibit AVIC (known). Passthrough guests cannot migrate safely.'
            % ((release,) + qemu),
            "Prefer <hyperv mode='custom'> with the enlightenments listed."))
        return
    if qemu is not None:
        out.append(finding(
            'hyperv_passthrough', INHIBIT,
            "Hyper-V mode='passthrough' turns on SynIC, and QEMU %d.%d (older than 6.2) has no "
            'hv-avic: Windows then uses AutoEOI, which inhibits AVIC for the whole VM (known, '
            'HYPERV).' % qemu, fix + ' Or use QEMU 6.2 or later.'))
        return
    out.append(finding(
        'hyperv_passthrough', WARNING,
        "Hyper-V mode='passthrough' turns on SynIC: with QEMU 6.2 or later on kernel %s it also "
        'turns on hv-avic, so AVIC stays on; with an older QEMU Windows uses AutoEOI, which '
        'inhibits AVIC (known). The QEMU version is not known here.' % release,
        "Add <avic state='on'/> to <hyperv> (libvirt >= 8.10), or use <hyperv mode='custom'>."))


def check_hyperv(s, host, out):
    """The findings of the guest's Hyper-V enlightenments (none without <hyperv>)."""
    hv = s['hyperv']
    if hv is None:
        return
    avic_on = hv.get('avic', False)
    release = host['kernel']['release']
    old = host['kernel']['version'] < kernel_rules.HYPERV_AUTOEOI
    if hv.get('mode') == 'passthrough':
        _check_passthrough(hv, host, out)
    if hv.get('synic') and synic_inhibits(host, avic_on):
        if old:
            out.append(finding(
                'hyperv_synic', INHIBIT,
                "Hyper-V SynIC is on: kernel %s (older than 5.15) inhibits AVIC for the whole VM as "
                "soon as SynIC is activated, <avic state='on'/> or not (known, HYPERV; 5.15 limited it "
                'to AutoEOI in use).' % release,
                'Remove <synic> and <stimer>, or use kernel 5.15 or later with <avic state=\'on\'/>.'))
        else:
            out.append(finding(
                'hyperv_synic', INHIBIT,
                'Hyper-V SynIC is on without <avic state=\'on\'/>: Windows then uses AutoEOI, which '
                'inhibits AVIC for the whole VM (known, HYPERV).',
                "Add <avic state='on'/> to <hyperv> (libvirt >= 8.10), or remove <synic> and <stimer>."))
    if hv.get('stimer') and synic_inhibits(host, avic_on):
        out.append(finding(
            'hyperv_stimer', WARNING,
            'Hyper-V stimer is on: it needs SynIC, which inhibits AVIC %s (known).'
            % ('on kernel %s (older than 5.15)' % release if old
               else "without <avic state='on'/>"),
            'Remove <stimer> together with <synic>.' if old
            else "Keep it with <avic state='on'/>, or remove <stimer> together with <synic>."))
    if hv.get('vapic') and not avic_on:
        out.append(finding(
            'hyperv_vapic', INFO,
            'Hyper-V vapic is on: no inhibit reason involves it (known), but QEMU then recommends '
            "Windows the MSR-based EOI and ICR (HV_APIC_ACCESS_RECOMMENDED), each an exit where AVIC "
            "could accelerate the access (reported); hv-avic (<avic state='on'/>) withdraws that "
            'recommendation. Some guests with IOMMU AVIC are reported to need vapic.',
            "Set <vapic state='off'/>, or add <avic state='on'/>."))
    if hv.get('ipi'):
        out.append(finding(
            'hyperv_tlbflush_ipi', INFO,
            'Hyper-V ipi is on: no inhibit reason involves it (known); Windows then sends IPIs as '
            'hypercalls, each an exit, where AVIC could deliver them without one (reported).',
            'Compare with and without <ipi> if interrupts seem slow; nothing to change by default.'))
