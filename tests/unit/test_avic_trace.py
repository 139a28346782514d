# -*- coding: utf-8 -*-
"""The runtime verdicts on recorded and written trace text (tests/fixtures/trace)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.trace import events as trace_events
from ansible_collections.vfio.avic.plugins.module_utils.trace import verdict as trace
from ansible_collections.vfio.avic.plugins.module_utils.trace import inhibits as trace_inhibits

from conftest import REPO

TRACES = os.path.join(REPO, 'tests', 'fixtures', 'trace')
INHIBITS_6_18 = ('DISABLED', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'PHYSICAL_ID_ALIASED', 'APIC_ID_MODIFIED',
                 'APIC_BASE_MODIFIED', 'NESTED', 'IRQWIN', 'PIT_REINJ', 'SEV', 'LOGICAL_ID_ALIASED',
                 'PHYSICAL_ID_TOO_BIG')


def evaluate(name):
    with open(os.path.join(TRACES, name + '.trace')) as handle:
        agg = trace.aggregate(handle.read())
    meta = {}
    if os.path.exists(os.path.join(TRACES, name + '.json')):
        with open(os.path.join(TRACES, name + '.json')) as handle:
            meta = json.load(handle)
    threads = dict((int(k), v) for k, v in (meta.get('threads') or {}).items())
    result = trace.evaluate(agg, meta.get('guests', []), meta.get('available'), meta.get('kernel'),
                            meta.get('host'), threads, meta.get('vm_owners'), meta.get('duration'))
    return result, dict((g['name'], g) for g in result['guests'])


def reason_names(guest):
    return sorted(r['name'] for r in guest['reasons'])


def test_every_fixture_parses_and_has_its_description():
    names = sorted(f[:-6] for f in os.listdir(TRACES) if f.endswith('.trace'))
    assert len(names) >= 10
    for name in names:
        result, _guests = evaluate(name)
        assert result['lines'] > 0, name
        if name != 'garbage':
            assert result['unparsed'] == 0, (name, result['unparsed_examples'])
            assert os.path.exists(os.path.join(TRACES, name + '.json')), name


def test_multi_guest_interleaving_is_attributed_per_guest():
    result, guests = evaluate('multi_guest_6.18')
    assert result['lost_events'] == 17
    win = guests['win11']
    assert win['verdict'] == 'avic_active' and win['reasons'] == []
    assert win['counts']['accelerated'] == 235 and win['counts']['emulated'] == 1
    assert win['counts']['avic_exits']['kvm_avic_incomplete_ipi'] == 10
    assert win['counts']['doorbells'] == 35
    pit = guests['pit-linux']
    assert pit['verdict'] == 'avic_inhibited' and pit['counts']['emulated'] == 105
    assert pit['counts'].get('accelerated', 0) == 0
    assert guests['idle']['verdict'] == 'no_data' and 'idle' in guests['idle']['message']
    assert result['sole_vm'] is None, 'three VMs: interrupt-context events stay unattributed'


def test_inhibits_set_at_guest_start_map_to_audit_findings():
    _result, guests = evaluate('guest_starts_6.18')
    assert guests['linux-discard']['verdict'] == 'avic_active', 'ABSENT and PIT_REINJ were cleared again'
    assert reason_names(guests['linux-pit']) == ['PIT_REINJ']
    assert [r['finding'] for r in guests['linux-pit']['reasons']] == ['pit_reinject']
    assert [r['finding'] for r in guests['win11-synic']['reasons']] == ['hyperv_synic']
    assert [r['finding'] for r in guests['sev-snp']['reasons']] == ['sev_guest']
    assert all(g['verdict'] == 'avic_inhibited' for n, g in guests.items() if n != 'linux-discard')


def test_module_avic_off_is_a_host_reason():
    _result, guests = evaluate('avic_off_6.18')
    legacy = guests['legacy']
    assert reason_names(legacy) == ['DISABLED', 'PIT_REINJ']
    disabled = [r for r in legacy['reasons'] if r['name'] == 'DISABLED'][0]
    assert disabled['scope'] == 'host' and disabled['finding'] == 'avic_disabled'
    assert legacy['counts']['emulated'] == legacy['counts']['accepted_fixed'] == 40


def test_every_inhibit_name_of_6_18_is_decoded():
    assert trace_inhibits.inhibit_table('6.18.0')[0] == INHIBITS_6_18
    _result, guests = evaluate('all_inhibits_6.18')
    events = guests['kitchen-sink']['inhibit_events']
    set_names = [e['reason_name'] for e in events if e['set']]
    cleared = [e['reason_name'] for e in events if not e['set']]
    assert tuple(set_names) == INHIBITS_6_18 and tuple(reversed(cleared)) == INHIBITS_6_18
    assert all(e['consistent'] for e in events)
    assert guests['kitchen-sink']['verdict'] == 'no_data', 'everything was cleared again'
    assert reason_names(guests['held-reasons']) == ['DISABLED', 'PHYSICAL_ID_TOO_BIG', 'PIT_REINJ']
    for name in INHIBITS_6_18:
        info = trace_inhibits.reason_info(name)
        assert info['name'] == name and info['meaning']
    assert trace_inhibits.reason_info('IRQWIN')['transient'] is True


def test_kernels_without_names_use_the_series_enum():
    _result, guests = evaluate('no_names_6.6')
    assert reason_names(guests['guest66']) == ['HYPERV', 'PIT_REINJ']
    assert guests['guest66']['reasons_source']


def test_update_request_event_and_old_numbering():
    result, guests = evaluate('update_request_5.15')
    assert result['inhibit_table'].endswith('kernels 5.6-5.18')
    assert reason_names(guests['old-x2apic']) == ['PIT_REINJ', 'X2APIC']
    assert [r['finding'] for r in guests['old-x2apic']['reasons']] == ['pit_reinject', 'x2apic_exposed']
    assert guests['fixed-pit']['verdict'] == 'avic_active'


def test_old_kernel_without_apicv_events_still_says_what_it_can():
    _result, guests = evaluate('old_4.19')
    assert guests['old-avic']['verdict'] == 'avic_active', 'AVIC exits prove AVIC runs'
    assert guests['old-plain']['verdict'] == 'no_data', 'no accelerated-path event exists to tell'


def test_recorded_traces_from_a_real_6_18_kernel():
    for name in ('recorded_6.18_qemu_start', 'recorded_6.18_record_tgid'):
        _result, guests = evaluate(name)
        (guest,) = guests.values()
        assert guest['verdict'] == 'avic_inhibited' and reason_names(guest) == ['DISABLED']


def test_garbage_lines_are_counted_not_fatal():
    result, _guests = evaluate('garbage')
    assert result['unparsed'] == 4 and result['unparsed_examples']
    assert trace.aggregate('').lines == 0
    assert trace.aggregate('\x00\x01 not a trace\n[LOST 3 EVENTS]\n').lost == 3


@pytest.mark.parametrize('line', [
    '       CPU 3/KVM-2108    [003] d..1.  5012.028320: kvm_apicv_accept_irq: apicid 3 vec 236 (Fixed|edge)',
    ' qemu-system-x86-4242  (   4242) [001] ..... 9100.000000: kvm_apicv_inhibit_changed: set reason=9, '
    'inhibits=0x200 PIT_REINJ',
])
def test_parse_line_reads_comm_tid_and_event(line):
    parsed = trace_events.parse_line(line)
    assert parsed is not None and parsed['event'].startswith('kvm_apicv_')
