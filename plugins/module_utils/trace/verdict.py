# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AVIC at run time, from the kernel's own KVM tracepoints (pure, stdlib only).

Reads text as tracefs prints it (``trace`` or ``trace_pipe``): one event a line,
``<comm>-<tid> [(tgid)] [cpu] <flags> <timestamp>: <event>: <fields>``. Counts, per
guest (QEMU process -> libvirt domain), interrupts KVM delivered through the
accelerated path against those it emulated, AVIC exits, and decodes every APICv
inhibit change into the kernel's reason names. Nothing here touches a file;
tracefs.py does the tracefs and /proc work.

What the tracepoints mean (all read in the kernel source, so messages say "known"):

- ``kvm_apic_accept_irq`` fires in ``__apic_accept_irq()`` for every interrupt an
  in-kernel local APIC accepts, in every delivery mode, whether APICv is active or not
  (arch/x86/kvm/lapic.c).
- ``kvm_apicv_accept_irq`` (on AMD) fires in ``svm_complete_interrupt_delivery()``
  only while APICv is active for the vCPU (arch/x86/kvm/svm/svm.c): KVM put the
  vector into the vAPIC page and rang the doorbell or woke the vCPU. It is called by
  ``svm_deliver_interrupt()`` (from ``__apic_accept_irq()``, Fixed and LowPrio only,
  so such a delivery also counts as accepted) and by the AVIC incomplete-IPI kick
  (``avic_kick_vcpu()``, arch/x86/kvm/svm/avic.c), which accepts nothing: there the
  accelerated count can exceed the accepted one. IPIs that AVIC delivers between
  running vCPUs and interrupts the IOMMU posts (IOMMU AVIC) trace nothing at all.
  On Intel, ``vmx_deliver_interrupt()`` traces it for posted interrupts.
- ``kvm_inj_virq`` fires when KVM injects an interrupt itself (event injection,
  ``svm_inject_irq()``): the emulated path, taken for every interrupt while APICv is
  inhibited, and for ExtINT (legacy PIC) also while it runs; an injection an exit
  interrupted is traced again with ``[reinjected]`` and counted once, ``Soft/INTn``
  (a software interrupt instruction) not at all. So "accelerated" is
  ``kvm_apicv_accept_irq`` and "emulated" is ``kvm_inj_virq``; "accepted - accelerated"
  is not the emulated count.
  Checked on real kernels in the KVM lab (tests/fixtures/kernels): with one vCPU, every
  ``kvm_apicv_accept_irq`` follows a ``kvm_apic_accept_irq`` of the same vector while
  AVIC is active, no ``kvm_apicv_accept_irq`` is traced while it is inhibited, and
  ``kvm_inj_virq`` counts the emulated injections.
- ``kvm_avic_incomplete_ipi``, ``kvm_avic_unaccelerated_access`` and
  ``kvm_avic_kick_vcpu_slowpath`` are AVIC exits and ``kvm_avic_doorbell`` an AVIC
  doorbell: each exists only while AVIC runs for the vCPU (arch/x86/kvm/svm/avic.c).
- ``kvm_apicv_inhibit_changed`` (``set``/``cleared`` ``reason=N, inhibits=0xMASK``,
  followed by the reason names from kernel 6.11 or so) is traced whenever a
  VM-wide inhibit changes; older kernels trace ``kvm_apicv_update_request``
  (``activate``/``deactivate`` ``bit=N`` or ``reason=N``, no mask). Only VM-wide reasons
  are traced: NESTED is per vCPU from 5.19 (a vCPU running L2 has AVIC off without a
  trace), and while APICv is off in the module (DISABLED) no later change is traced.
- ``kvm_avic_ga_log`` (``vmid=N, vcpuid=N``): the IOMMU logged a guest interrupt
  for a vCPU that was not running (IOMMU AVIC); it fires in IRQ context and names
  KVM's internal VM id, not a process.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

EV_APIC_ACCEPT = 'kvm_apic_accept_irq'
EV_APICV_ACCEPT = 'kvm_apicv_accept_irq'
EV_INHIBIT = 'kvm_apicv_inhibit_changed'
EV_INHIBIT_OLD = 'kvm_apicv_update_request'
EV_INCOMPLETE_IPI = 'kvm_avic_incomplete_ipi'
EV_UNACCELERATED = 'kvm_avic_unaccelerated_access'
EV_KICK_SLOWPATH = 'kvm_avic_kick_vcpu_slowpath'
EV_DOORBELL = 'kvm_avic_doorbell'
EV_GA_LOG = 'kvm_avic_ga_log'
EV_INJ_VIRQ = 'kvm_inj_virq'

# Every tracepoint the runtime check enables when the kernel has it. The AVIC exits are
# counted by their own tracepoints, which the exit handlers (avic_incomplete_ipi_interception,
# avic_unaccelerated_access_interception) emit for every such kvm_exit: kvm_exit itself,
# which fires on every exit of every guest, would add cost and nothing else.
SAMPLED_EVENTS = (EV_APIC_ACCEPT, EV_APICV_ACCEPT, EV_INHIBIT, EV_INHIBIT_OLD, EV_INCOMPLETE_IPI,
                  EV_UNACCELERATED, EV_KICK_SLOWPATH, EV_DOORBELL, EV_GA_LOG, EV_INJ_VIRQ)
AVIC_EXIT_EVENTS = (EV_INCOMPLETE_IPI, EV_UNACCELERATED, EV_KICK_SLOWPATH)

VERDICT_ACTIVE = 'avic_active'
VERDICT_INHIBITED = 'avic_inhibited'
VERDICT_NO_DATA = 'no_data'
VERDICTS = (VERDICT_ACTIVE, VERDICT_INHIBITED, VERDICT_NO_DATA)

# --- APICv inhibit reasons -------------------------------------------------------------
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

# --- parsing ------------------------------------------------------------------------------
LINE_RE = re.compile(
    r'^\s*(?P<comm>.*?)-(?P<tid>\d+)\s+'
    r'(?:\(\s*(?P<tgid>-+|\d+)\)\s+)?'
    r'\[(?P<cpu>\d+)\]\s+'
    r'(?:(?P<flags>[^\s\[\]]{4,6})\s+)?'
    r'(?P<ts>\d+(?:\.\d+)?):\s+'
    r'(?P<event>\w+):\s?(?P<body>.*)$')
LOST_RE = re.compile(r'\[LOST (\d+) EVENTS\]')
ACCEPT_RE = re.compile(r'apicid (?P<apicid>[0-9a-fA-F]+) vec (?P<vec>\d+) '
                       r'\((?P<mode>\w+)\|(?P<trig>\w+)\)(?P<coalesced> \(coalesced\))?')
INHIBIT_RE = re.compile(r'(?P<verb>set|cleared) reason=(?P<reason>\d+), inhibits=0x(?P<mask>[0-9a-fA-F]+)'
                        r'(?: (?P<names>[A-Z0-9_|]+))?')
INHIBIT_OLD_RE = re.compile(r'(?P<verb>activate|deactivate) (?:bit|reason)=(?P<reason>\d+)')
UNACCEL_RE = re.compile(r'vcpu=(?P<vcpu>\d+), offset=(?P<offset>0x[0-9a-fA-F]+|0)(?:\((?P<reg>[\w ]*)\))?, '
                        r'(?P<ft>trap|fault), (?P<rw>read|write)')
GA_LOG_RE = re.compile(r'vmid=(?P<vmid>\d+), vcpuid=(?P<vcpuid>\d+)')
# Kernel workers named after the QEMU process they serve.
WORKER_RE = re.compile(r'^(?:vhost-|kvm-pit/)(\d+)$')
ACCELERABLE_MODES = ('Fixed', 'LowPrio')


class TraceFormatError(ValueError):
    """An event line whose fields do not have the format this module knows."""


def parse_line(line):
    """One tracefs line as a dict, or None for headers, comments and blank lines.

    Keys: comm, tid, tgid (None unless the record-tgid option was on), cpu, ts (float),
    flags, event, body. A ``[LOST n EVENTS]`` line gives ``{'lost': n}``.
    """
    text = line.rstrip('\n')
    if not text.strip() or text.lstrip().startswith('#'):
        return None
    match = LINE_RE.match(text)
    if not match:
        lost = LOST_RE.search(text)
        if lost:
            return {'lost': int(lost.group(1))}
        raise TraceFormatError('not a trace event line: %r' % text[:120])
    tgid = match.group('tgid')
    return {
        'comm': match.group('comm'),
        'tid': int(match.group('tid')),
        'tgid': int(tgid) if tgid and tgid.isdigit() else None,
        'cpu': int(match.group('cpu')),
        'flags': match.group('flags'),
        'ts': float(match.group('ts')),
        'event': match.group('event'),
        'body': match.group('body'),
    }


def normalise_inhibit_name(name):
    name = name.strip().upper()
    return INHIBIT_ALIASES.get(name, name)


def parse_inhibit(event, body):
    """Fields of an inhibit change: {set, reason, mask (int or None), names (list or None)}."""
    if event == EV_INHIBIT:
        match = INHIBIT_RE.search(body)
        if not match:
            raise TraceFormatError('%s fields not understood: %r' % (event, body))
        names = match.group('names')
        return {
            'set': match.group('verb') == 'set',
            'reason': int(match.group('reason')),
            'mask': int(match.group('mask'), 16),
            'names': [normalise_inhibit_name(n) for n in names.split('|') if n] if names else None,
        }
    if event == EV_INHIBIT_OLD:
        match = INHIBIT_OLD_RE.search(body)
        if not match:
            raise TraceFormatError('%s fields not understood: %r' % (event, body))
        # 'deactivate' APICv means the inhibit reason was set.
        return {'set': match.group('verb') == 'deactivate', 'reason': int(match.group('reason')),
                'mask': None, 'names': None}
    raise TraceFormatError('%s is not an inhibit event' % event)


def parse_accept(body):
    """Fields of kvm_apic_accept_irq / kvm_apicv_accept_irq."""
    match = ACCEPT_RE.search(body)
    if not match:
        raise TraceFormatError('interrupt fields not understood: %r' % body)
    return {'apicid': int(match.group('apicid'), 16), 'vector': int(match.group('vec')),
            'mode': match.group('mode'), 'trigger': match.group('trig')}


def parse_unaccelerated(body):
    match = UNACCEL_RE.search(body)
    if not match:
        raise TraceFormatError('%s fields not understood: %r' % (EV_UNACCELERATED, body))
    reg = (match.group('reg') or '').strip() or match.group('offset')
    return {'vcpu': int(match.group('vcpu')), 'register': reg, 'kind': match.group('ft'),
            'access': match.group('rw')}


# --- decoding ---------------------------------------------------------------------------------
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


# --- aggregation --------------------------------------------------------------------------------
def _new_thread(comm):
    return {'comm': comm, 'events': {}, 'accepted_fixed': 0, 'accepted_other': {},
            'unaccelerated': {}, 'inhibits': [], 'ga_log': {}, 'injected': 0}


class TraceAggregator(object):
    """Counts per traced thread; feed it trace text in any chunks."""

    def __init__(self):
        self.threads = {}
        self.lost = 0
        self.lines = 0
        self.unparsed = []
        self.unparsed_count = 0
        self._partial = ''

    def feed(self, text):
        """Add a chunk of trace text; a line cut at the chunk's end waits for the next chunk."""
        data = self._partial + text
        lines = data.split('\n')
        self._partial = lines.pop()
        for line in lines:
            self.add_line(line)

    def flush(self):
        if self._partial:
            self.add_line(self._partial)
            self._partial = ''

    def add_line(self, line):
        try:
            rec = parse_line(line)
        except TraceFormatError:
            self._bad(line)
            return
        if rec is None:
            return
        if 'lost' in rec:
            self.lost += rec['lost']
            return
        self.lines += 1
        try:
            self._add(rec)
        except TraceFormatError:
            self._bad(line)

    def _bad(self, line):
        self.unparsed_count += 1
        if len(self.unparsed) < 5:
            self.unparsed.append(line.strip()[:200])

    def _add(self, rec):
        event = rec['event']
        thread = self.threads.get(rec['tid'])
        if thread is None:
            thread = self.threads[rec['tid']] = _new_thread(rec['comm'])
        if rec.get('tgid'):
            thread['tgid'] = rec['tgid']
        if event == EV_APIC_ACCEPT:
            fields = parse_accept(rec['body'])
            if fields['mode'] in ACCELERABLE_MODES:
                thread['accepted_fixed'] += 1
            else:
                other = thread['accepted_other']
                other[fields['mode']] = other.get(fields['mode'], 0) + 1
        elif event in (EV_INHIBIT, EV_INHIBIT_OLD):
            change = parse_inhibit(event, rec['body'])
            change.update({'ts': rec['ts'], 'event': event, 'tid': rec['tid'], 'comm': rec['comm']})
            thread['inhibits'].append(change)
        elif event == EV_UNACCELERATED:
            fields = parse_unaccelerated(rec['body'])
            key = '%s %s (%s)' % (fields['register'], fields['access'], fields['kind'])
            thread['unaccelerated'][key] = thread['unaccelerated'].get(key, 0) + 1
        elif event == EV_INJ_VIRQ:
            # "IRQ 0xVEC", " [reinjected]" when an exit interrupted the delivery (counted once);
            # "Soft/INTn" is a software interrupt instruction, no delivery
            body = rec['body']
            if body.startswith('IRQ') and 'reinjected' not in body:
                thread['injected'] += 1
        elif event == EV_GA_LOG:
            match = GA_LOG_RE.search(rec['body'])
            if match:
                vmid = int(match.group('vmid'))
                thread['ga_log'][vmid] = thread['ga_log'].get(vmid, 0) + 1
        thread['events'][event] = thread['events'].get(event, 0) + 1


def aggregate(text):
    """A TraceAggregator over a whole trace text."""
    agg = TraceAggregator()
    agg.feed(text)
    agg.flush()
    return agg


# --- attribution ------------------------------------------------------------------------------
def _empty_stats():
    return {'events': {}, 'accepted_fixed': 0, 'accepted_other': {}, 'unaccelerated': {},
            'inhibits': [], 'ga_log': {}, 'threads': 0, 'attributed_by': {}, 'injected': 0}


def _merge(stats, thread, how):
    stats['threads'] += 1
    stats['attributed_by'][how] = stats['attributed_by'].get(how, 0) + sum(thread['events'].values())
    for key in ('events', 'accepted_other', 'unaccelerated', 'ga_log'):
        for name, count in thread[key].items():
            stats[key][name] = stats[key].get(name, 0) + count
    stats['accepted_fixed'] += thread['accepted_fixed']
    stats['injected'] += thread.get('injected', 0)
    stats['inhibits'].extend(thread['inhibits'])


def owner_of(tid, thread, pids, threads, sole):
    """(guest pid or None, how) for one traced thread; see attribute()."""
    owner = thread.get('tgid') or threads.get(tid) or (tid if tid in pids else None)
    if owner in pids:
        return owner, 'thread'
    worker = WORKER_RE.match(thread['comm'] or '')
    if worker and int(worker.group(1)) in pids:
        return int(worker.group(1)), 'worker'
    if sole in pids:
        return sole, 'sole_vm'
    return None, 'none'


def sole_vm(guests, vm_owners=None):
    """The pid of the only VM on the host, or None (several, none, or unknown)."""
    if vm_owners is not None:
        owners = set(vm_owners)
        return next(iter(owners)) if len(owners) == 1 else None
    kvm_guests = [g['pid'] for g in guests if g.get('kvm', True)]
    return kvm_guests[0] if len(kvm_guests) == 1 else None


def attribute(agg, guests, threads=None, vm_owners=None):
    """Split the aggregated threads between guests.

    guests: [{pid, name, ...}] running QEMU processes; threads: {tid: tgid} of their
    threads (from /proc/<pid>/task); vm_owners: pids holding a KVM VM file descriptor, or
    None when unknown. A thread belongs to a guest when it is one of its threads (or the
    trace recorded its tgid), or a vhost-<pid> or kvm-pit/<pid> worker of it. Events from other contexts (interrupt handlers running on
    whatever task was interrupted) go to the only VM on the host when there is exactly
    one, and stay unattributed otherwise.

    Returns ({guest pid: stats}, unattributed stats, {tid: comm} unattributed, sole VM pid).
    """
    threads = dict(threads or {})
    pids = set(g['pid'] for g in guests)
    sole = sole_vm(guests, vm_owners)
    per_guest = dict((pid, _empty_stats()) for pid in pids)
    unattributed = _empty_stats()
    others = {}
    for tid, thread in sorted(agg.threads.items()):
        owner, how = owner_of(tid, thread, pids, threads, sole)
        if owner is None:
            _merge(unattributed, thread, how)
            others[tid] = thread['comm']
        else:
            _merge(per_guest[owner], thread, how)
    return per_guest, unattributed, others, sole


# --- verdicts ------------------------------------------------------------------------------------
def _inhibit_state(changes, table):
    """Decode a guest's inhibit changes in time order; the reasons set at the end."""
    learned = {}
    decoded = []
    current = set()
    known = False
    for change in sorted(changes, key=lambda c: c['ts']):
        learned.update(learn_names(change.get('mask'), change.get('names')))
        item = decode_inhibit(change, table, learned)
        item['ts'] = change['ts']
        item['comm'] = change.get('comm')
        decoded.append(item)
        if item['active'] is not None:
            current = set(item['active'])
            known = True
        elif item['set']:
            current.add(item['reason_name'])
        else:
            current.discard(item['reason_name'])
    return decoded, current, known


def counts(stats, available=None):
    """Counts of one guest; accelerated and emulated are None when the kernel cannot tell.

    accelerated counts kvm_apicv_accept_irq, emulated counts kvm_inj_virq (the interrupt
    injections KVM made itself, each once) where that was sampled (``emulated_from``: ``kvm_inj_virq``); a trace
    without it (``available`` unknown and no such event) falls back to the Fixed/LowPrio
    interrupts accepted and not accelerated (``emulated_from``: ``estimate``), which holds
    for guests whose accelerated deliveries all went through the local APIC.
    """
    events = stats['events']
    fixed = stats['accepted_fixed']
    injected = stats.get('injected', 0)
    if available is not None:
        inj_sampled = EV_INJ_VIRQ in available
    else:
        inj_sampled = events.get(EV_INJ_VIRQ, 0) > 0
    if available is not None and EV_APICV_ACCEPT not in available:
        accelerated = None
    else:
        accelerated = events.get(EV_APICV_ACCEPT, 0)
    if inj_sampled:
        emulated, source = injected, EV_INJ_VIRQ
    elif accelerated is None:
        emulated, source = None, None
    else:
        emulated, source = max(fixed - accelerated, 0), 'estimate'
    return {
        'accepted': events.get(EV_APIC_ACCEPT, 0),
        'accepted_fixed': fixed,
        'accepted_other': dict(stats['accepted_other']),
        'accelerated': accelerated,
        'emulated': emulated,
        'emulated_from': source,
        'avic_exits': dict((e, events.get(e, 0)) for e in AVIC_EXIT_EVENTS),
        'doorbells': events.get(EV_DOORBELL, 0),
        'ga_log': sum(stats['ga_log'].values()),
        'unaccelerated_registers': dict(stats['unaccelerated']),
    }


def _interrupts(c):
    if c['accelerated'] is None:
        return '%d fixed interrupts accepted' % c['accepted_fixed']
    return '%d interrupts accelerated, %d emulated' % (c['accelerated'], c['emulated'])


def guest_verdict(stats, available, table, host=None, duration=None):
    """Verdict, reasons and message for one guest's sampled stats.

    available: the tracepoint names the kernel has; host: {'accel': 'AVIC'|'APICv'|None,
    'enabled': bool or None} from the KVM module parameters.
    """
    host = host or {}
    accel = host.get('accel') or 'AVIC/APICv'
    seconds = ' in %g s' % duration if duration else ''
    c = counts(stats, available)
    decoded, current, _known = _inhibit_state(stats['inhibits'], table)
    persistent = sorted(r for r in current if r not in TRANSIENT_INHIBITS)
    exits = sum(c['avic_exits'].values())
    result = {'counts': c, 'inhibit_events': decoded, 'reasons': [], 'reasons_source': None,
              'decode_consistent': all(item['consistent'] for item in decoded)}
    note = ''
    if current and not persistent:
        note += ' Transient inhibits seen: %s.' % ', '.join(sorted(current))
    if not result['decode_consistent']:
        bad = [item for item in decoded if not item['consistent']][0]
        note += (' Inhibit decoding is uncertain: reason %d (%s) does not match mask 0x%x, so this '
                 "kernel's reason numbering may differ from the %s table."
                 % (bad['reason'], bad['reason_name'], bad['mask'], inhibit_table_name(table)))
    if persistent:
        result['reasons'] = [reason_info(r) for r in sorted(current)]
        result['reasons_source'] = 'trace'
        result['verdict'] = VERDICT_INHIBITED
        result['message'] = ('%s is inhibited for this guest: the kernel traced %s (known from the '
                             'KVM source); %s%s.%s' % (accel, ', '.join(sorted(current)), _interrupts(c),
                                                       seconds, note))
        return result
    if c['accelerated'] or exits or c['doorbells']:
        result['verdict'] = VERDICT_ACTIVE
        if c['accelerated'] is None:
            what = ('%d AVIC exits and %d doorbells%s (this kernel has no %s tracepoint to count '
                    'accelerated deliveries)' % (exits, c['doorbells'], seconds, EV_APICV_ACCEPT))
        else:
            share = ''
            if c['accepted_fixed']:
                share = ' (%d%% of %d fixed interrupts)' % (
                    round(100.0 * min(c['accelerated'], c['accepted_fixed']) / c['accepted_fixed']),
                    c['accepted_fixed'])
            what = ('%d interrupts delivered through the accelerated path%s, %d AVIC exits, %d '
                    'doorbells%s' % (c['accelerated'], share, exits, c['doorbells'], seconds))
        result['message'] = '%s is active: %s.%s' % (accel, what, note)
        return result
    if c['accepted_fixed']:
        if c['accelerated'] is None:
            result['verdict'] = VERDICT_NO_DATA
            result['message'] = ('%d interrupts accepted%s, but this kernel has no %s tracepoint, '
                                 'so accelerated deliveries cannot be told from emulated ones; no '
                                 'AVIC exit was seen.%s' % (c['accepted_fixed'], seconds, EV_APICV_ACCEPT, note))
            return result
        result['verdict'] = VERDICT_INHIBITED
        if host.get('enabled') is False:
            result['reasons'] = [reason_info('DISABLED')]
            result['reasons_source'] = 'host'
            why = ' %s is off in the KVM module (DISABLED).' % accel
        else:
            why = (' The inhibit reasons were set before the sample started (most are set when the '
                   'guest starts): sample across a guest start (restart_to_capture) to name them.')
        result['message'] = ('All %d fixed interrupts%s were emulated, none accelerated: %s is '
                             'inhibited for this guest.%s%s' % (c['accepted_fixed'], seconds, accel, why, note))
        return result
    result['verdict'] = VERDICT_NO_DATA
    result['message'] = ('No interrupt or AVIC event from this guest%s: it is idle, or its interrupts '
                         'are posted by the IOMMU without KVM (IOMMU AVIC).%s' % (seconds, note))
    return result


def inhibit_table_name(table):
    for _first, candidate, source in INHIBIT_LAYOUTS:
        if candidate == table:
            return source
    return 'given'


def evaluate(agg, guests, available, kernel=None, host=None, threads=None, vm_owners=None,
             duration=None, names=None):
    """Everything the runtime check reports, from an aggregated trace and the process list.

    Returns {guests: [...], unattributed: {...}, inhibit_table: description, sole_vm}.
    ``names`` limits the per-guest results to those libvirt domain names.
    """
    table, source = inhibit_table(kernel)
    per_guest, unattributed, others, sole = attribute(agg, guests, threads, vm_owners)
    results = []
    for guest in sorted(guests, key=lambda g: (g.get('name') or '', g['pid'])):
        if names and guest.get('name') not in names:
            continue
        stats = per_guest[guest['pid']]
        result = guest_verdict(stats, available, table, host, duration)
        result.update({'name': guest.get('name'), 'pid': guest['pid'], 'kvm': guest.get('kvm'),
                       'attributed_by': dict(stats['attributed_by']), 'threads_seen': stats['threads']})
        results.append(result)
    decoded, current, _known = _inhibit_state(unattributed['inhibits'], table)
    other = {
        'counts': counts(unattributed, available),
        'inhibit_events': decoded,
        'threads': dict((str(t), comm) for t, comm in sorted(others.items())),
    }
    return {'guests': results, 'unattributed': other, 'inhibit_table': source, 'sole_vm': sole,
            'lines': agg.lines, 'lost_events': agg.lost, 'unparsed': agg.unparsed_count,
            'unparsed_examples': list(agg.unparsed)}
