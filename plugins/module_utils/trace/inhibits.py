# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""APICv inhibit reasons (pure, stdlib only): the reason number -> name tables of each kernel
range (enum kvm_apicv_inhibit changed its order over time), decoding an inhibit change against
its mask, and what each reason means for the static audit (the finding that causes it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# The reason number in the trace is the kernel's enum kvm_apicv_inhibit order, which
# changed over time; the bit in the inhibits mask is the same number.
#
# 6.3 and later: torvalds/linux arch/x86/include/asm/kvm_host.h at commit 004a0aa56ede
# (enum kvm_apicv_inhibit, DISABLE .. LOGICAL_ID_ALIASED = 0..11); PHYSICAL_ID_TOO_BIG
# appended as 12 by "KVM: SVM: Inhibit AVIC if ID is too big instead of rejecting vCPU
# creation"; DISABLE renamed DISABLED with the APICV_INHIBIT_REASONS print table
# (later moved to arch/x86/kvm/x86.h). Checked against a running 6.18 kernel: its
# events/kvm/kvm_apicv_inhibit_changed/format prints the table in exactly this order,
# and a VM created there traces "set reason=0, inhibits=0x1 DISABLED".
INHIBITS_6_17 = ('DISABLED', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'PHYSICAL_ID_ALIASED',
                 'APIC_ID_MODIFIED', 'APIC_BASE_MODIFIED', 'NESTED', 'IRQWIN', 'PIT_REINJ', 'SEV',
                 'LOGICAL_ID_ALIASED', 'PHYSICAL_ID_TOO_BIG')
# 6.3 - 6.16: without PHYSICAL_ID_TOO_BIG (that reason came with the 6.17 AVIC rework). Seen
# on Debian's 6.12: its kvm_apicv_inhibit_changed format prints exactly these 12 names.
INHIBITS_6_3 = INHIBITS_6_17[:12]
# 6.0 - 6.2: "KVM: x86: document AVIC/APICv inhibit reasons" (a9603ae0e4ee, 5.19) put
# ABSENT and BLOCKIRQ after HYPERV, "KVM: x86: inhibit APICv/AVIC on changes to APIC ID
# or APIC base" (3743c2f02517, 5.19) added the two *_MODIFIED reasons after them, and
# "KVM: SVM: Introduce hybrid-AVIC mode" (0e311d33bfbe, 6.0) removed X2APIC.
INHIBITS_6_0 = ('DISABLED', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'APIC_ID_MODIFIED',
                'APIC_BASE_MODIFIED', 'NESTED', 'IRQWIN', 'PIT_REINJ', 'SEV')
# 5.19: as 6.0 with X2APIC still between PIT_REINJ and SEV.
INHIBITS_5_19 = ('DISABLED', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'APIC_ID_MODIFIED',
                 'APIC_BASE_MODIFIED', 'NESTED', 'IRQWIN', 'PIT_REINJ', 'X2APIC', 'SEV')
# 5.6 - 5.18: the #define APICV_INHIBIT_REASON_* numbers (DISABLE 0 .. ABSENT 7), kept
# when they became an enum; SEV appended as 8.
INHIBITS_5_6 = ('DISABLED', 'HYPERV', 'NESTED', 'IRQWIN', 'PIT_REINJ', 'X2APIC', 'BLOCKIRQ',
                'ABSENT', 'SEV')
# (first kernel, table, where it comes from). The 6.3 table is checked against a real
# kernel; the boundaries of the older ones come from the patches, not from release tags,
# so decoding with them is cross-checked against the mask (see decode_inhibit).
INHIBIT_LAYOUTS = (
    ((6, 17), INHIBITS_6_17, 'enum kvm_apicv_inhibit, kernel 6.17 and later (checked on 6.18)'),
    ((6, 3), INHIBITS_6_3, 'enum kvm_apicv_inhibit, kernels 6.3-6.16 (checked on 6.12)'),
    ((6, 0), INHIBITS_6_0, 'enum kvm_apicv_inhibit, kernels 6.0-6.2'),
    ((5, 19), INHIBITS_5_19, 'enum kvm_apicv_inhibit, kernel 5.19'),
    ((0, 0), INHIBITS_5_6, 'APICV_INHIBIT_REASON_* numbers, kernels 5.6-5.18'),
)
# Names some kernels and patch versions print for the same reasons.
INHIBIT_ALIASES = {'DISABLE': 'DISABLED', 'PHYS_ID_ALIASED': 'PHYSICAL_ID_ALIASED',
                   'APIC_ID_MOD': 'APIC_ID_MODIFIED', 'APIC_BASE_MOD': 'APIC_BASE_MODIFIED',
                   'LOG_ID_ALIASED': 'LOGICAL_ID_ALIASED'}
# Reasons that come and go on their own while a guest runs. BLOCKIRQ is not one: a
# debugger's KVM_GUESTDBG_BLOCKIRQ stays until the debugger clears it.
TRANSIENT_INHIBITS = frozenset(['IRQWIN', 'ABSENT'])

# Reason -> (finding id of the static audit that causes it, scope, what it means).
# Scope 'host' findings come from avic_facts (rules/host), 'domain' ones from rules/domain.
REASON_FINDINGS = {
    'DISABLED': ('avic_disabled', 'host',
                 'AVIC/APICv is off in the KVM module (kvm_amd avic=0) or not supported'),
    'HYPERV': ('hyperv_synic', 'domain',
               'the Hyper-V guest uses SynIC AutoEOI (no <avic state="on"/>)'),
    'ABSENT': (None, None, 'no in-kernel local APIC yet (set until QEMU creates the irqchip)'),
    'BLOCKIRQ': (None, None, 'a debugger set KVM_GUESTDBG_BLOCKIRQ on a vCPU'),
    'PHYSICAL_ID_ALIASED': (None, None, 'several vCPUs share an APIC ID'),
    'APIC_ID_MODIFIED': (None, None, 'the guest changed an APIC ID from its reset value'),
    'APIC_BASE_MODIFIED': (None, None, 'the guest moved the APIC base from its reset value'),
    'NESTED': ('svm_exposed', 'domain', 'the guest runs nested guests (SVM exposed); VM-wide '
                                        'only before 5.19, per vCPU and never traced after'),
    'IRQWIN': (None, None, 'KVM waits for an interrupt window (ExtINT, legacy PIC); transient'),
    'PIT_REINJ': ('pit_reinject', 'domain',
                  'the in-kernel PIT reinjects missed ticks (no tickpolicy="discard")'),
    'X2APIC': ('x2apic_exposed', 'domain', 'the guest has x2apic and the kernel predates hybrid AVIC'),
    'SEV': ('sev_guest', 'domain', 'an SEV guest (SEV, SEV-ES or SEV-SNP): AVIC is off for every one'),
    'LOGICAL_ID_ALIASED': (None, None, 'several vCPUs share a logical APIC ID'),
    'PHYSICAL_ID_TOO_BIG': ('too_many_vcpus', 'domain',
                            'a vCPU APIC ID is beyond what AVIC (255) or x2AVIC can address'),
}


def normalise_name(name):
    """A reason name as this collection spells it (INHIBIT_ALIASES)."""
    name = name.strip().upper()
    return INHIBIT_ALIASES.get(name, name)


def _version(kernel):
    if isinstance(kernel, (tuple, list)):
        return tuple(int(p) for p in kernel[:2])
    match = re.match(r'\s*(\d+)\.(\d+)', str(kernel or ''))
    return (int(match.group(1)), int(match.group(2))) if match else None


def inhibit_table(kernel=None):
    """(names by reason number, description) for a kernel release; newest when unknown."""
    version = _version(kernel)
    for first, table, source in INHIBIT_LAYOUTS:
        if version is None or version >= first:
            return table, source
    return INHIBIT_LAYOUTS[-1][1], INHIBIT_LAYOUTS[-1][2]


def inhibit_table_name(table):
    """The description of a table of INHIBIT_LAYOUTS."""
    for _first, candidate, source in INHIBIT_LAYOUTS:
        if candidate == table:
            return source
    return 'given'


def mask_bits(mask):
    bits = []
    bit = 0
    while mask:
        if mask & 1:
            bits.append(bit)
        mask >>= 1
        bit += 1
    return bits


def learn_names(mask, names):
    """{bit: name} from a mask and the names the kernel printed for it (in bit order)."""
    bits = mask_bits(mask or 0)
    if not names or len(bits) != len(names):
        return {}
    return dict(zip(bits, names))


def _name(table, learned, bit):
    if bit in learned:
        return learned[bit]
    if 0 <= bit < len(table):
        return table[bit]
    return 'UNKNOWN_%d' % bit


def decode_inhibit(change, table, learned=None):
    """Names for one inhibit change.

    Returns {set, reason, reason_name, mask, active (names of the mask, or None),
    decoded ('kernel' when the names came from the trace line, 'table' otherwise),
    consistent (False when a 'set' reason is missing from its mask)}.
    """
    learned = dict(learned or {})
    printed = learn_names(change.get('mask'), change.get('names'))
    learned.update(printed)
    mask = change.get('mask')
    reason = change['reason']
    consistent = True
    if mask is not None and change['set'] and not mask & (1 << reason):
        consistent = False
    if mask is not None and not change['set'] and mask & (1 << reason):
        consistent = False
    return {
        'set': change['set'],
        'reason': reason,
        'reason_name': _name(table, learned, reason),
        'mask': mask,
        'active': None if mask is None else [_name(table, learned, b) for b in mask_bits(mask)],
        'decoded': 'kernel' if reason in printed else 'table',
        'consistent': consistent,
    }


def reason_info(name):
    """One decoded reason as reported: name, finding id and scope where one maps."""
    finding_id, scope, meaning = REASON_FINDINGS.get(name, (None, None, 'not a reason this collection knows'))
    return {'name': name, 'finding': finding_id, 'scope': scope, 'meaning': meaning,
            'transient': name in TRANSIENT_INHIBITS}
