# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""APIC IDs of a guest topology as QEMU numbers them, and the limits AVIC has for them (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Highest guest APIC ID the AVIC physical ID table can hold (arch/x86/kvm/svm/avic.c and
# arch/x86/include/asm/svm.h): xAPIC AVIC 0xFE (0xFF is broadcast), x2AVIC 0x1FF, and with
# X2AVIC_EXT ("KVM: SVM: Add AVIC support for 4k vCPUs in x2AVIC mode", 6.19) 0xFFF. KVM
# compares the vCPU id, which QEMU sets to the vCPU's APIC ID.
AVIC_MAX_APIC_ID = 0xFE
X2AVIC_MAX_APIC_ID = 0x1FF
X2AVIC_EXT_MAX_APIC_ID = 0xFFF


def _bits(count):
    """Bits QEMU gives a topology level of ``count`` members (apicid_bitwidth_for_count)."""
    count = max(int(count), 1)
    return (count - 1).bit_length()


def topology_max_apic_id(sockets=1, dies=1, clusters=1, cores=1, threads=1):
    """The highest APIC ID QEMU gives a guest of this topology: each level gets a power-of-two
    field (include/hw/i386/topology.h), so 3 sockets of 72 cores reach 2 * 128 + 71 = 327."""
    widths = [_bits(threads), _bits(cores), _bits(clusters), _bits(dies)]
    last = [threads - 1, cores - 1, clusters - 1, dies - 1, sockets - 1]
    apic_id, shift = 0, 0
    for index, value in enumerate(last):
        apic_id |= value << shift
        if index < len(widths):
            shift += widths[index]
    return apic_id


def max_apic_id(summary):
    """The highest APIC ID of a domain summary: from <cpu><topology> when present, else
    vCPUs - 1 (QEMU's default topologies number the vCPUs 0..N-1)."""
    topology = summary.get('topology')
    if topology:
        return topology_max_apic_id(**topology)
    return max(summary['vcpus'], 1) - 1
