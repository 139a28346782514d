# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AVIC at run time, from the kernel's own KVM tracepoints (pure, stdlib only).

Reads text as tracefs prints it (``trace`` or ``trace_pipe``): one event a line,
``<comm>-<tid> [(tgid)] [cpu] <flags> <timestamp>: <event>: <fields>``. Counts, per
guest (QEMU process -> libvirt domain), interrupts KVM delivered through the
accelerated path against those it emulated, AVIC exits, and decodes every APICv
inhibit change into the kernel's reason names. Nothing here touches a file;
events.py parses the lines, inhibits.py decodes the inhibit reasons, tracefs.py does the
tracefs work and processes.py the /proc work.

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
from ansible_collections.vfio.avic.plugins.module_utils.trace import events as ev
from ansible_collections.vfio.avic.plugins.module_utils.trace import inhibits

VERDICT_ACTIVE = 'avic_active'
VERDICT_INHIBITED = 'avic_inhibited'
VERDICT_NO_DATA = 'no_data'
VERDICTS = (VERDICT_ACTIVE, VERDICT_INHIBITED, VERDICT_NO_DATA)


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
            rec = ev.parse_line(line)
        except ev.TraceFormatError:
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
        except ev.TraceFormatError:
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
        if event == ev.EV_APIC_ACCEPT:
            fields = ev.parse_accept(rec['body'])
            if fields['mode'] in ev.ACCELERABLE_MODES:
                thread['accepted_fixed'] += 1
            else:
                other = thread['accepted_other']
                other[fields['mode']] = other.get(fields['mode'], 0) + 1
        elif event in (ev.EV_INHIBIT, ev.EV_INHIBIT_OLD):
            change = ev.parse_inhibit(event, rec['body'])
            change.update({'ts': rec['ts'], 'event': event, 'tid': rec['tid'], 'comm': rec['comm']})
            thread['inhibits'].append(change)
        elif event == ev.EV_UNACCELERATED:
            fields = ev.parse_unaccelerated(rec['body'])
            key = '%s %s (%s)' % (fields['register'], fields['access'], fields['kind'])
            thread['unaccelerated'][key] = thread['unaccelerated'].get(key, 0) + 1
        elif event == ev.EV_INJ_VIRQ:
            # "IRQ 0xVEC", " [reinjected]" when an exit interrupted the delivery (counted once);
            # "Soft/INTn" is a software interrupt instruction, no delivery
            body = rec['body']
            if body.startswith('IRQ') and 'reinjected' not in body:
                thread['injected'] += 1
        elif event == ev.EV_GA_LOG:
            match = ev.GA_LOG_RE.search(rec['body'])
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
    worker = ev.WORKER_RE.match(thread['comm'] or '')
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


def _inhibit_state(changes, table):
    """Decode a guest's inhibit changes in time order; the reasons set at the end."""
    learned = {}
    decoded = []
    current = set()
    known = False
    for change in sorted(changes, key=lambda c: c['ts']):
        learned.update(inhibits.learn_names(change.get('mask'), change.get('names')))
        item = inhibits.decode_inhibit(change, table, learned)
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
        inj_sampled = ev.EV_INJ_VIRQ in available
    else:
        inj_sampled = events.get(ev.EV_INJ_VIRQ, 0) > 0
    if available is not None and ev.EV_APICV_ACCEPT not in available:
        accelerated = None
    else:
        accelerated = events.get(ev.EV_APICV_ACCEPT, 0)
    if inj_sampled:
        emulated, source = injected, ev.EV_INJ_VIRQ
    elif accelerated is None:
        emulated, source = None, None
    else:
        emulated, source = max(fixed - accelerated, 0), 'estimate'
    return {
        'accepted': events.get(ev.EV_APIC_ACCEPT, 0),
        'accepted_fixed': fixed,
        'accepted_other': dict(stats['accepted_other']),
        'accelerated': accelerated,
        'emulated': emulated,
        'emulated_from': source,
        'avic_exits': dict((e, events.get(e, 0)) for e in ev.AVIC_EXIT_EVENTS),
        'doorbells': events.get(ev.EV_DOORBELL, 0),
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
    persistent = sorted(r for r in current if r not in inhibits.TRANSIENT_INHIBITS)
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
                 % (bad['reason'], bad['reason_name'], bad['mask'], inhibits.inhibit_table_name(table)))
    if persistent:
        result['reasons'] = [inhibits.reason_info(r) for r in sorted(current)]
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
                    'accelerated deliveries)' % (exits, c['doorbells'], seconds, ev.EV_APICV_ACCEPT))
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
                                 'AVIC exit was seen.%s' % (c['accepted_fixed'], seconds, ev.EV_APICV_ACCEPT, note))
            return result
        result['verdict'] = VERDICT_INHIBITED
        if host.get('enabled') is False:
            result['reasons'] = [inhibits.reason_info('DISABLED')]
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


def evaluate(agg, guests, available, kernel=None, host=None, threads=None, vm_owners=None,
             duration=None, names=None):
    """Everything the runtime check reports, from an aggregated trace and the process list.

    Returns {guests: [...], unattributed: {...}, inhibit_table: description, sole_vm}.
    ``names`` limits the per-guest results to those libvirt domain names.
    """
    table, source = inhibits.inhibit_table(kernel)
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
