# -*- coding: utf-8 -*-
"""Tracefs bookkeeping of the sampler on a directory laid out like tracefs.

The real tracefs is exercised by tests/integration/test_avic_runtime_tracefs.py.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.trace import tracefs as sampler
from ansible_collections.vfio.avic.plugins.module_utils.trace import mounts as trace_mounts

from conftest import COLLECTIONS


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
    assert trace_mounts.find_tracefs(mounts) == str(trace)
    assert trace_mounts.find_tracefs('debugfs %s debugfs rw 0 0\n' % debug) == str(debug / 'tracing')
    assert trace_mounts.find_tracefs('') in (None, trace_mounts.DEFAULT_MOUNT_POINT)
    assert trace_mounts.find_tracefs(mounts, wanted=str(tmp_path / 'nope')) is None
    assert trace_mounts.parse_mounts('none /a\\040b tracefs rw 0 0\nshort\n') == [('/a b', 'tracefs')]


def fallback_tracefs(root):
    """A tracefs without instances (old kernel, or instances unavailable): the top-level buffer."""
    fake_tracefs(root)
    (root / 'trace').write_text('')
    (root / 'trace_pipe').write_text('')
    return root


def test_fallback_mode_clears_what_the_sample_left_in_the_top_level_buffer(tmp_path):
    root = fallback_tracefs(tmp_path)
    session = sampler.TraceSession(tracefs=str(root), use_instance=True)
    seen = []
    try:
        session.open()
        assert session.method == 'global' and session.instance is None
        session.start(seen.append)
        # a failure before the last read: the buffer still holds the sample's events
        (root / 'trace').write_text('qemu-4242 [001] 10.0: kvm_apicv_accept_irq: apicid 0 vec 236\n')
    finally:
        report = session.close()
    assert (root / 'trace').read_text() == ''
    assert report['errors'] == [] and report['state_restored'] is True and report['method'] == 'global'
    assert (root / 'tracing_on').read_text() == '1'
    assert (root / 'events/kvm/kvm_apicv_accept_irq/enable').read_text() == '0'


def test_fallback_mode_says_when_the_buffer_cannot_be_emptied(tmp_path):
    root = fallback_tracefs(tmp_path)
    session = sampler.TraceSession(tracefs=str(root), use_instance=False)
    session.open()
    (root / 'per_cpu' / 'cpu0' / 'stats').write_text('entries: 7\n')  # the kernel kept them
    report = session.close()
    assert report['state_restored'] is False
    assert report['errors'] == ['the top-level trace buffer still holds 7 events after clearing it']


# --- avic_runtime: restart_to_capture needs restart: true --------------------------------
FAKE_VIRSH = """#!/bin/sh
# records every call; a guest that is running until it is shut down
echo "$*" >> "$VIRSH_LOG"
case "$3" in
  domstate) if [ -f "$VIRSH_LOG.down" ]; then echo 'shut off'; else echo running; fi ;;
  shutdown) touch "$VIRSH_LOG.down" ;;
  start) rm -f "$VIRSH_LOG.down" ;;
esac
"""


def run_runtime_module(tmp_path, args, check_mode=False):
    """plugins/modules/avic_runtime.py as Ansible runs it, on a tracefs laid out in tmp_path, with
    a virsh on PATH that stands for the libvirt guest: (result, virsh calls)."""
    root = tmp_path / 'tracefs'
    if not root.exists():
        fallback_tracefs(root)
    fake_bin = tmp_path / 'bin'
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / 'virsh').write_text(FAKE_VIRSH)
    (fake_bin / 'virsh').chmod(0o755)
    log = tmp_path / 'virsh.log'
    if log.exists():
        log.unlink()
    payload = dict(args, tracefs=str(root), duration=1, _ansible_check_mode=check_mode)
    args_file = tmp_path / 'args.json'
    args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': payload}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, VIRSH_LOG=str(log),
               PATH='%s:%s' % (fake_bin, os.environ.get('PATH', '')))
    proc = subprocess.run(
        [sys.executable, '-m', 'ansible_collections.vfio.avic.plugins.modules.avic_runtime', str(args_file)],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return json.loads(proc.stdout), calls


@pytest.mark.parametrize('args, missing', [
    ({'restart_to_capture': True, 'domain': 'win11'}, 'restart missing'),
    ({'restart': True}, 'restart_to_capture, domain missing'),
    ({'restart': True, 'domain': 'win11'}, 'restart_to_capture missing'),
    ({'restart_to_capture': True, 'restart': True}, 'domain missing'),
    ({'domain': 'win11'}, 'restart_to_capture, restart missing'),
])
def test_an_incomplete_restart_request_is_refused_before_anything_happens(tmp_path, args, missing):
    root = tmp_path / 'tracefs'
    fallback_tracefs(root)

    def files():
        return dict((str(p), p.read_text()) for p in sorted(root.rglob('*')) if p.is_file())

    before = files()
    result, calls = run_runtime_module(tmp_path, args)
    assert calls == [], 'virsh was called'
    assert result.get('failed') is True and missing in result['msg'], result
    assert 'restart_to_capture: true, restart: true and domain together' in result['msg']
    assert 'sampled' not in result, 'nothing was sampled'
    assert files() == before, 'the tracefs was touched'


def test_restart_in_check_mode_is_only_reported(tmp_path):
    result, calls = run_runtime_module(tmp_path, {'restart_to_capture': True, 'restart': True,
                                                  'domain': 'win11'}, check_mode=True)
    assert calls == []
    assert result['changed'] is True and result['restart']['performed'] is False
    assert result['restart']['reason'] == 'check mode: win11 would be restarted'


def test_restart_with_consent_goes_through_virsh(tmp_path):
    """The control for the two tests above: the same fake virsh is used when consent is given."""
    result, calls = run_runtime_module(tmp_path, {'restart_to_capture': True, 'restart': True,
                                                  'domain': 'win11', 'libvirt_uri': 'qemu:///system'})
    assert calls == ['-c qemu:///system domstate --domain win11', '-c qemu:///system shutdown --domain win11',
                     '-c qemu:///system domstate --domain win11', '-c qemu:///system start --domain win11']
    assert result['changed'] is True and result['restart']['performed'] is True, result
    assert result['state_restored'] is True
