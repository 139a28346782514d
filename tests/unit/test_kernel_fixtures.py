# -*- coding: utf-8 -*-
"""The collection's kernel tables against what real kernels did (tests/fixtures/kernels).

Each recording was made by tests/lab/kvm_probe.py in the KVM lab VM with real nested KVM
guests (see tests/fixtures/kernels/README.md); `make kernel-matrix` re-records them.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules
from ansible_collections.vfio.avic.plugins.module_utils.trace import events as trace_events
from ansible_collections.vfio.avic.plugins.module_utils.trace import verdict as trace
from ansible_collections.vfio.avic.plugins.module_utils.trace import inhibits as trace_inhibits

from conftest import REPO

STORED = os.path.join(REPO, 'tests', 'fixtures', 'kernels')
# VFIO_AVIC_KERNEL_RECORDINGS checks another directory of recordings (make kernel-probe: fresh ones
# of the oldest and the newest kernel), and compares each with the stored one of its series
FRESH = os.environ.get('VFIO_AVIC_KERNEL_RECORDINGS')
KERNELS = FRESH or STORED


def recorded(base):
    return sorted(d for d in os.listdir(base) if os.path.isfile(os.path.join(base, d, 'kernel.json')))


RELEASES = recorded(KERNELS)


def version(release):
    return tuple(int(p) for p in re.match(r'(\d+)\.(\d+)', release).groups())


def load(release, *parts, **kw):
    with open(os.path.join(kw.get('base') or KERNELS, release, *parts)) as handle:
        return json.load(handle) if parts[-1].endswith('.json') else handle.read()


def configs(release, base=None):
    base = base or KERNELS
    return sorted(d for d in os.listdir(os.path.join(base, release))
                  if os.path.isfile(os.path.join(base, release, d, 'meta.json')))


def run(release, config, base=None):
    """The verdict avic_trace gives the recorded trace, as avic_runtime would on that host."""
    meta = load(release, config, 'meta.json', base=base)
    info = load(release, 'kernel.json', base=base)
    agg = trace.aggregate(load(release, config, 'trace.txt', base=base))
    guest = {'pid': meta['qemu_pid'], 'name': config, 'kvm': True}
    params = meta['kvm_amd']
    host = {'accel': 'AVIC', 'enabled': params.get('avic') in ('Y', '1')}
    result = trace.evaluate(agg, [guest], [e for e in trace_events.SAMPLED_EVENTS if e in info['kvm_events']],
                            kernel=info['release'], host=host, vm_owners=[meta['qemu_pid']],
                            duration=meta['sample_seconds'])
    return result, result['guests'][0], agg


def test_there_are_recordings_of_at_least_one_kernel():
    assert RELEASES, 'tests/fixtures/kernels has no recording'
    for release in RELEASES:
        assert set(configs(release)) >= {'avic_off', 'force_pit_reinject', 'force_pit_discard'}, release


def newest_of_the_matrix():
    """NEWEST_RELEASE of tests/lab/vm.py: the newest kernel the matrix installs."""
    with open(os.path.join(REPO, 'tests', 'lab', 'vm.py')) as handle:
        return re.search(r"^NEWEST_RELEASE = '([^']+)'", handle.read(), re.M).group(1)


@pytest.mark.skipif(bool(os.environ.get('VFIO_AVIC_KERNEL_RECORDINGS')),
                    reason='VFIO_AVIC_KERNEL_RECORDINGS names another set of recordings')
def test_the_oldest_and_the_newest_kernel_of_the_matrix_are_recorded():
    # the oldest: Debian 12's own 6.1; the newest: what the kernel matrix installs last
    assert [r for r in RELEASES if version(r) == (6, 1)], RELEASES
    newest = newest_of_the_matrix()
    assert newest in RELEASES, 'no recording of %s: run make kernel-matrix' % newest
    assert max(RELEASES, key=version) == newest, RELEASES


@pytest.mark.parametrize('release', RELEASES)
def test_the_inhibit_table_of_the_series_matches_the_kernels_own(release):
    info = load(release, 'kernel.json')
    table, _source = trace_inhibits.inhibit_table(release)
    fmt = info['formats'].get(trace_events.EV_INHIBIT) or ''
    # kernels that print the names list them in enum order (__print_flags over
    # APICV_INHIBIT_REASONS, "{ BIT(APICV_INHIBIT_REASON_X), "X" }" once expanded)
    printed = re.findall(r'APICV_INHIBIT_REASON_\w+\)\), "(\w+)"', fmt)
    if printed:
        # the table used for this release must be the kernel's own, name for name
        assert printed == list(table[:len(printed)]), (printed, table)
        assert len(printed) == len(table), (printed, table)
    # every kernel: the reasons the recordings set decode to the configuration's cause
    for config in configs(release):
        _result, guest, agg = run(release, config)
        for item in guest['inhibit_events']:
            assert item['consistent'], (config, item)


@pytest.mark.parametrize('release', RELEASES)
def test_avic_off_is_disabled_from_vm_creation(release):
    result, guest, _agg = run(release, 'avic_off')
    meta = load(release, 'avic_off', 'meta.json')
    assert meta['kvm_amd']['avic'] in ('N', '0')
    assert guest['verdict'] == trace.VERDICT_INHIBITED, guest['message']
    names = [r['name'] for r in guest['reasons']]
    assert 'DISABLED' in names, names
    assert [r['finding'] for r in guest['reasons'] if r['name'] == 'DISABLED'] == ['avic_disabled']
    # the kernel skips inhibit updates while APICv is off: only VM creation is traced
    # (6.1: ABSENT, then DISABLED; 6.12: DISABLED alone)
    set_names = [i['reason_name'] for i in guest['inhibit_events'] if i['set']]
    assert set_names in (['ABSENT', 'DISABLED'], ['DISABLED']), set_names
    assert guest['counts']['accelerated'] == 0
    assert result['lost_events'] == 0 and result['unparsed'] == 0


@pytest.mark.parametrize('release', RELEASES)
def test_default_pit_sets_pit_reinj_with_forced_avic(release):
    _result, guest, _agg = run(release, 'force_pit_reinject')
    meta = load(release, 'force_pit_reinject', 'meta.json')
    assert meta['kvm_amd']['avic'] == 'Y' and meta['kvm_amd']['force_avic'] == 'Y'
    assert guest['verdict'] == trace.VERDICT_INHIBITED, guest['message']
    reasons = dict((r['name'], r) for r in guest['reasons'])
    assert 'PIT_REINJ' in reasons and reasons['PIT_REINJ']['finding'] == 'pit_reinject'
    assert 'DISABLED' not in reasons
    assert guest['counts']['accelerated'] == 0
    assert meta.get('up_seconds'), 'the guest booted to its payload'


@pytest.mark.parametrize('release', RELEASES)
def test_pit_discard_leaves_avic_active_and_counts_accelerated_deliveries(release):
    _result, guest, _agg = run(release, 'force_pit_discard')
    assert guest['verdict'] == trace.VERDICT_ACTIVE, guest['message']
    assert guest['counts']['accelerated'] > 0
    assert not [r for r in guest['reasons'] if not r['transient']]


@pytest.mark.parametrize('release', RELEASES)
def test_dmesg_of_the_load_matches_the_patterns(release):
    v = version(release)
    forced = load(release, 'force_pit_reinject', 'meta.json')
    off = load(release, 'avic_off', 'meta.json')
    text = '\n'.join(forced['dmesg_load'])
    found = gather_facts.parse_dmesg(text)
    assert found['avic_forced'], text
    assert found['force_avic_taint'], text
    prefix = 'kvm_amd' if v >= kernel_rules.KMSG_MODULE_PREFIX else 'SVM'
    forced_lines = [line for line in forced['dmesg_load'] if 'force enabled' in line]
    assert len(forced_lines) == 1 and ('] %s: AVIC ' % prefix) in forced_lines[0], forced_lines
    # "AVIC enabled" follows the forced line from 6.18; before, only "crash and burn" does
    assert found['avic_enabled'] == (v >= kernel_rules.FORCED_MESSAGE_ONE_LINE), text
    if found['avic_enabled']:
        assert found['prefix'] == prefix, text
    assert forced['taint'] & 64
    assert not gather_facts.parse_dmesg('\n'.join(off['dmesg_load']))['avic_enabled']


@pytest.mark.parametrize('release', RELEASES)
def test_module_parameters_and_defaults(release):
    v = version(release)
    info = load(release, 'kernel.json')
    boot = info['kvm_amd_defaults']
    assert ('enable_ipiv' in boot) == (v >= kernel_rules.ENABLE_IPIV_PARAM), sorted(boot)
    assert ('enable_device_posted_irqs' in boot) == (v >= kernel_rules.DEVICE_POSTED_IRQS_PARAM), sorted(boot)
    assert 'force_avic' in boot
    # the lab's CPU hides AVIC in CPUID: whatever the default, the module runs without it
    assert boot['avic'] in ('N', '0'), boot
    forced = load(release, 'force_pit_reinject', 'meta.json')['kvm_amd']
    if v >= kernel_rules.ERRATUM_1235_FAMILY_17H and 'enable_ipiv' in forced:
        # family 17h (the lab's EPYC): erratum #1235 turns IPI virtualisation off
        assert forced['enable_ipiv'] in ('N', '0'), forced


@pytest.mark.parametrize('release', RELEASES)
def test_a_running_guest_holds_kvm_amd(release):
    for config in configs(release):
        meta = load(release, config, 'meta.json')
        refused = meta['unload_while_running']
        assert refused['rc'] != 0 and 'in use' in refused['stderr'], refused
        assert meta['instance_left'] is False


def deliveries(release, config):
    """(event, vector) of the interrupt events of the recorded guest, in trace order."""
    out = []
    for line in load(release, config, 'trace.txt').splitlines():
        rec = trace_events.parse_line(line)
        if rec and rec.get('event') in (trace_events.EV_APIC_ACCEPT, trace_events.EV_APICV_ACCEPT):
            out.append((rec['event'], trace_events.parse_accept(rec['body'])['vector']))
    return out


# vectors the legacy PIC delivers: the BIOS's master PIC base and Linux's ISA_IRQ_VECTOR(0-15)
# (arch/x86/include/asm/irq_vectors.h)
PIC_VECTORS = set(range(0x08, 0x10)) | set(range(0x30, 0x40))


def vectors(release, config):
    """Per vector: interrupts KVM injected (kvm_inj_virq 'IRQ 0xVEC', repeats left out) and
    interrupts the local APIC accepted (kvm_apic_accept_irq), of the recorded guest."""
    injected, accepted = {}, {}
    for line in load(release, config, 'trace.txt').splitlines():
        rec = trace_events.parse_line(line)
        if not rec:
            continue
        if rec.get('event') == trace_events.EV_INJ_VIRQ and rec['body'].startswith('IRQ') and 'reinjected' not in rec['body']:
            vector = int(rec['body'].split()[1], 16)
            injected[vector] = injected.get(vector, 0) + 1
        elif rec.get('event') == trace_events.EV_APIC_ACCEPT:
            vector = trace_events.parse_accept(rec['body'])['vector']
            accepted[vector] = accepted.get(vector, 0) + 1
    return injected, accepted


@pytest.mark.parametrize('release', RELEASES)
def test_counter_definitions_hold_on_the_real_kernel(release):
    # AVIC active: each accelerated delivery is an accepted interrupt of the same vector,
    # traced right after it (svm_deliver_interrupt -> svm_complete_interrupt_delivery)
    events = deliveries(release, 'force_pit_discard')
    accelerated = [i for i, (event, _v) in enumerate(events) if event == trace_events.EV_APICV_ACCEPT]
    assert accelerated
    for index in accelerated:
        assert index > 0 and events[index - 1] == (trace_events.EV_APIC_ACCEPT, events[index][1]), events[index - 2:index + 1]
    _result, active, _agg = run(release, 'force_pit_discard')
    assert active['counts']['accelerated'] == len(accelerated)
    assert active['counts']['emulated_from'] == trace_events.EV_INJ_VIRQ
    assert active['counts']['emulated'] < active['counts']['accelerated']
    # and KVM injects no interrupt itself: its only injections are software interrupts (seen on
    # every kernel of the matrix: one 'Soft/INTn 0x19 [reinjected]', the BIOS's INT 19h, an
    # instruction an exit interrupted), which the emulated count leaves out
    injected, _accepted = vectors(release, 'force_pit_discard')
    assert injected == {} and active['counts']['emulated'] == 0, injected
    soft = [rec['body'] for rec in map(trace_events.parse_line, load(release, 'force_pit_discard', 'trace.txt').splitlines())
            if rec and rec.get('event') == trace_events.EV_INJ_VIRQ]
    assert all(body.startswith('Soft/INTn') for body in soft), soft
    # inhibited or off: nothing accelerated, every interrupt injected by KVM itself, each
    # injection counted once ([reinjected] lines are repeats). Not bounded by the accepts: the
    # legacy PIC's interrupts (ExtINT, arch/x86/kvm/irq.c kvm_cpu_get_extint) are injected
    # without the local APIC accepting them (the BIOS's timer at vector 0x08, Linux's ISA
    # vectors 0x30-0x3f before the IO-APIC routes the timer), while accepts of a vector still
    # pending coalesce into one injection. Seen on 7.3.4 with avic=0: 3063 injected, 3061 accepted.
    for config in ('avic_off', 'force_pit_reinject'):
        _result, guest, agg = run(release, config)
        counts = guest['counts']
        assert counts['accelerated'] == 0, config
        injected, accepted = vectors(release, config)
        beyond = set(v for v in injected if injected[v] > accepted.get(v, 0))
        assert beyond <= PIC_VECTORS, (config, sorted(beyond))
        assert 0 < counts['emulated'] == sum(injected.values()), (config, counts)
        assert counts['emulated'] <= counts['accepted'] + sum(injected[v] for v in beyond), (config, counts)
        raw = sum(t['events'].get(trace_events.EV_INJ_VIRQ, 0) for t in agg.threads.values())
        assert raw >= counts['emulated'], (config, raw, counts)


def stored_of_the_series(release):
    """The stored recording of this release, or else the newest stored one of its series."""
    stored = recorded(STORED)
    if release in stored:
        return release
    series = [r for r in stored if version(r) == version(release)]
    return max(series) if series else None


def observations(release, base):
    """What a kernel did that does not vary from run to run: parameters and their defaults,
    tracepoints and their formats, and per configuration the inhibit reasons set, the verdict,
    whether deliveries were accelerated, what the kernel log of the load says, the refused unload."""
    info = load(release, 'kernel.json', base=base)
    out = {'kvm_amd_defaults': info['kvm_amd_defaults'], 'kvm_events': sorted(info['kvm_events']),
           'formats': dict((e, info['formats'].get(e)) for e in trace_events.SAMPLED_EVENTS)}
    for config in configs(release, base):
        meta = load(release, config, 'meta.json', base=base)
        _result, guest, _agg = run(release, config, base)
        out[config] = {
            'kvm_amd': meta['kvm_amd'],
            'inhibits_set': sorted(set(i['reason_name'] for i in guest['inhibit_events'] if i['set'])),
            'inhibits_left': sorted(r['name'] for r in guest['reasons'] if not r['transient']),
            'verdict': guest['verdict'],
            'accelerated': guest['counts']['accelerated'] > 0,
            'dmesg_load': gather_facts.parse_dmesg('\n'.join(meta['dmesg_load'])),
            'unload_refused': meta['unload_while_running']['rc'] != 0,
            'booted': bool(meta.get('up_seconds')),
        }
    return out


@pytest.mark.skipif(not FRESH, reason='make kernel-probe sets VFIO_AVIC_KERNEL_RECORDINGS to fresh recordings')
@pytest.mark.parametrize('release', RELEASES)
def test_a_fresh_recording_agrees_with_the_stored_one_of_its_series(release):
    stored = stored_of_the_series(release)
    assert stored, 'no stored recording of the %d.%d series: run make kernel-matrix' % version(release)
    fresh, kept = observations(release, FRESH), observations(stored, STORED)
    assert sorted(fresh) == sorted(kept), (release, stored)
    for key in sorted(kept):
        assert fresh[key] == kept[key], '%s: %s differs from the recording of %s' % (release, key, stored)
