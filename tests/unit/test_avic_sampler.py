# -*- coding: utf-8 -*-
"""Tracefs bookkeeping of the sampler on a directory laid out like tracefs.

The real tracefs is exercised by tests/integration/test_avic_runtime_tracefs.py.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils import avic_sampler as sampler


def fake_tracefs(root, tracer='nop', set_event='', entries=0):
    (root / 'events' / 'kvm' / 'kvm_apicv_accept_irq').mkdir(parents=True)
    (root / 'events' / 'kvm' / 'kvm_apicv_accept_irq' / 'enable').write_text('0\n')
    (root / 'tracing_on').write_text('1\n')
    (root / 'current_tracer').write_text(tracer + '\n')
    (root / 'set_event').write_text(set_event)
    (root / 'per_cpu' / 'cpu0').mkdir(parents=True)
    (root / 'per_cpu' / 'cpu0' / 'stats').write_text('entries: %d\noverrun: 0\n' % entries)
    return root


def test_trace_state_writes_back_what_it_found(tmp_path):
    root = fake_tracefs(tmp_path)
    state = sampler.TraceState(str(root))
    state.write('tracing_on', '0')
    state.write('events/kvm/kvm_apicv_accept_irq/enable', '1')
    state.write('tracing_on', '1')
    state.write('tracing_on', '0')
    assert state.saved == {'tracing_on': '1\n', 'events/kvm/kvm_apicv_accept_irq/enable': '0\n'}
    assert state.restore() == []
    assert (root / 'tracing_on').read_text() == '1'
    assert (root / 'events/kvm/kvm_apicv_accept_irq/enable').read_text() == '0'
    assert state.touched == [str(root / 'tracing_on'), str(root / 'events/kvm/kvm_apicv_accept_irq/enable')]


def test_trace_state_reports_what_it_cannot_restore(tmp_path):
    root = fake_tracefs(tmp_path)
    state = sampler.TraceState(str(root))
    state.write('tracing_on', '0')
    (root / 'tracing_on').unlink()
    (root / 'tracing_on').mkdir()
    errors = state.restore()
    assert len(errors) == 1 and 'tracing_on' in errors[0]


def test_enable_markers_with_a_star_restore_to_the_digit():
    assert sampler._setting('1*\n') == '1' and sampler._setting('0*') == '0'
    assert sampler._setting(' nop \n') == 'nop'


def test_top_level_buffer_in_use_is_left_alone(tmp_path):
    for name, kwargs, busy in (('free', {}, None),
                               ('tracer', {'tracer': 'function'}, "tracer is 'function'"),
                               ('events', {'set_event': 'sched:sched_switch\n'}, 'sched:sched_switch'),
                               ('entries', {'entries': 12}, '12 events')):
        root = fake_tracefs(tmp_path / name, **kwargs)
        reason = sampler.global_busy(str(root))
        assert (reason is None) if busy is None else (busy in reason), name


def test_find_tracefs_prefers_the_standard_mount_and_knows_debugfs(tmp_path):
    trace = fake_tracefs(tmp_path / 'tracing')
    debug = tmp_path / 'debug'
    fake_tracefs(debug / 'tracing')
    mounts = ('tracefs %s tracefs rw 0 0\ndebugfs %s debugfs rw 0 0\n' % (trace, debug))
    assert sampler.find_tracefs(mounts) == str(trace)
    assert sampler.find_tracefs('debugfs %s debugfs rw 0 0\n' % debug) == str(debug / 'tracing')
    assert sampler.find_tracefs('') in (None, sampler.DEFAULT_MOUNT_POINT)
    assert sampler.find_tracefs(mounts, wanted=str(tmp_path / 'nope')) is None
    assert sampler.parse_mounts('none /a\\040b tracefs rw 0 0\nshort\n') == [('/a b', 'tracefs')]
