# -*- coding: utf-8 -*-
"""vfio.avic.avic_runtime against the real tracefs of the machine the tests run on.

Needs root and a kernel with the KVM tracepoints (the kvm module loaded); skipped otherwise.
No guest runs on a test machine (guests another run left running are reported as such): the
module must say so, and leave tracing exactly as it was, mounted or not, with the events someone
else enabled still enabled.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit'))

from conftest import COLLECTIONS, run_ansible_module  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.vfio.avic.plugins.module_utils.trace import tracefs as trace_fs  # noqa: E402 pylint: disable=wrong-import-position,wrong-import-order
from ansible_collections.vfio.avic.plugins.module_utils.trace import sampler  # noqa: E402 pylint: disable=wrong-import-position,wrong-import-order
from ansible_collections.vfio.avic.plugins.module_utils.trace import processes  # noqa: E402 pylint: disable=wrong-import-position,wrong-import-order
from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles  # noqa: E402 pylint: disable=wrong-import-position,wrong-import-order

TRACING = '/sys/kernel/tracing'
TOP_FILES = ('tracing_on', 'current_tracer', 'set_event', 'buffer_size_kb', 'options/record-tgid',
             'trace_clock')


def mounted():
    with open('/proc/mounts') as handle:
        return any(line.split()[1] == TRACING and line.split()[2] == 'tracefs' for line in handle)


def snapshot():
    """Everything a sample could change under tracefs."""
    state = {}
    for rel in TOP_FILES:
        path = os.path.join(TRACING, rel)
        if os.path.exists(path):
            with open(path) as handle:
                state[rel] = handle.read()
    kvm = os.path.join(TRACING, 'events', 'kvm')
    for event in sorted(os.listdir(kvm)) if os.path.isdir(kvm) else []:
        path = os.path.join(kvm, event, 'enable')
        if os.path.exists(path):
            with open(path) as handle:
                state['events/kvm/%s/enable' % event] = handle.read()
    instances = os.path.join(TRACING, 'instances')
    state['instances'] = sorted(os.listdir(instances)) if os.path.isdir(instances) else None
    state['buffer_entries'] = trace_fs._buffer_entries(TRACING)
    return state


@pytest.fixture
def tracefs():
    if os.geteuid() != 0:
        pytest.skip('needs root for tracefs')
    if not os.path.isdir('/sys/module/kvm'):
        pytest.skip('the kvm module is not loaded on this machine: no KVM tracepoints')
    was_mounted = mounted()
    if not was_mounted:
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', TRACING], check=True)
    if not os.path.isdir(os.path.join(TRACING, 'events', 'kvm', 'kvm_apic_accept_irq')):
        if not was_mounted:
            subprocess.run(['umount', TRACING], check=True)
        pytest.skip('this kernel has no kvm tracepoints under tracefs')
    yield was_mounted
    if not was_mounted and mounted():
        subprocess.run(['umount', TRACING], check=True)


def test_unmounted_tracefs_is_mounted_for_the_sample_and_unmounted_again(tracefs):
    if not tracefs:
        subprocess.run(['umount', TRACING], check=True)
    before = mounted()
    status, result = run_ansible_module('vfio.avic.avic_runtime', 'duration=1')
    assert 'SUCCESS' in status, result
    assert result['changed'] is False and result['state_restored'] is True
    assert result['sampled'] is True and result['tracepoints_available']['kvm_apic_accept_irq'] is True
    running = sorted(g['pid'] for g in processes.running_guests(HostFiles()))
    if running:  # guests of another run on this machine (a TCG lab VM): each is reported
        assert sorted(g['pid'] for g in result['guests']) == running, result['guests']
        assert all(g['verdict'] in ('avic_active', 'avic_inhibited', 'no_data') for g in result['guests'])
    else:
        assert result['guests'] == [] and 'No QEMU guest runs' in result['message']
    assert mounted() == before
    assert result['mounted_by_module'] == (not before)


def test_tracing_state_is_left_exactly_as_found(tracefs):
    if not mounted():
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', TRACING], check=True)
    enable = os.path.join(TRACING, 'events', 'kvm', 'kvm_apic_accept_irq', 'enable')
    with open(enable) as handle:
        original = handle.read().strip()
    with open(enable, 'w') as handle:
        handle.write('1')  # someone else's tracing: it must stay on
    try:
        before = snapshot()
        for flags in ((), ('--check',)):
            status, result = run_ansible_module('vfio.avic.avic_runtime', 'duration=1', *flags)
            assert 'SUCCESS' in status and result['state_restored'] is True, result
            assert result['errors'] == []
            assert snapshot() == before
        assert before['events/kvm/kvm_apic_accept_irq/enable'].strip() == '1'
    finally:
        with open(enable, 'w') as handle:
            handle.write(original)


def test_bad_options_fail_with_a_message_and_touch_nothing(tracefs):
    before = snapshot() if mounted() else None
    status, result = run_ansible_module('vfio.avic.avic_runtime', 'duration=500')
    assert 'FAILED' in status and 'duration' in result['msg']
    status, result = run_ansible_module('vfio.avic.avic_runtime', 'restart_to_capture=true restart=true')
    assert 'FAILED' in status and 'domain' in result['msg']
    assert (snapshot() if mounted() else None) == before


class Boom(Exception):
    """A failure inside the sample that the sampler does not expect."""


def _idle_top_level():
    busy = trace_fs.global_busy(TRACING)
    if busy:
        pytest.skip('the top-level trace buffer is in use on this machine (%s)' % busy)


def _marker(text):
    with open(os.path.join(TRACING, 'trace_marker'), 'w') as handle:
        handle.write(text)


@pytest.mark.parametrize('use_instance', [True, False], ids=['instance', 'top_level'])
def test_a_failure_inside_the_sample_leaves_tracing_as_found(tracefs, use_instance):
    if not mounted():
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', TRACING], check=True)
    if not use_instance:
        _idle_top_level()
    before = snapshot()
    seen = {}

    def boom():
        seen['on'] = open(os.path.join(TRACING, 'events', 'kvm', 'kvm_apic_accept_irq', 'enable')).read()
        if not use_instance:
            _marker('vfio-avic test: an event the sample leaves unread')
            seen['entries'] = trace_fs._buffer_entries(TRACING)
        raise Boom('failed during the sample')

    with pytest.raises(Boom):
        sampler.sample(2, use_instance=use_instance, during=boom)
    if use_instance:
        assert seen['on'].strip() == before['events/kvm/kvm_apic_accept_irq/enable'].strip(), \
            'the instance, not the top level, was enabled'
    else:
        assert seen['on'].strip() == '1', 'the sample ran in the top-level buffer'
    assert snapshot() == before


def test_events_left_in_the_top_level_buffer_are_cleared(tracefs):
    if not mounted():
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', TRACING], check=True)
    _idle_top_level()
    before = snapshot()
    session = trace_fs.TraceSession(use_instance=False)
    try:
        session.open()
        assert session.method == 'global'
        session.state.write('tracing_on', '1')  # tracing runs, and nothing reads the buffer
        _marker('vfio-avic test: left in the buffer')
        assert trace_fs._buffer_entries(TRACING) >= 1
    finally:
        report = session.close()
    assert report['state_restored'] is True and report['errors'] == [], report
    assert trace_fs._buffer_entries(TRACING) == 0
    assert snapshot() == before


def _start_module(args):
    """avic_runtime as a process of its own (as Ansible runs it), so that it can be signalled."""
    handle = open(os.path.join(os.environ.get('TMPDIR', '/tmp'), 'avic_runtime_args_%d.json' % os.getpid()), 'w')
    with handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'ansible_collections.vfio.avic.plugins.modules.avic_runtime', handle.name],
        env=dict(os.environ, PYTHONPATH=COLLECTIONS), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True)
    return proc, handle.name


def _wait_for(predicate, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail('avic_runtime ended before the sample started: %s' % (proc.communicate(),))
        time.sleep(0.05)
    proc.kill()
    pytest.fail('the sample did not start within %d s' % timeout)


@pytest.mark.parametrize('use_instance', [True, False], ids=['instance', 'top_level'])
def test_sigterm_during_a_5s_sample_leaves_tracing_as_found(tracefs, use_instance):
    if not mounted():
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', TRACING], check=True)
    if not use_instance:
        _idle_top_level()
    before = snapshot()
    proc, args_path = _start_module({'duration': 5, 'use_instance': use_instance})
    try:
        if use_instance:
            prefix = '%s%d_' % (trace_fs.INSTANCE_PREFIX, proc.pid)
            instances = os.path.join(TRACING, 'instances')

            def sampling():
                return any(n.startswith(prefix) and os.path.exists(os.path.join(instances, n, 'tracing_on'))
                           and open(os.path.join(instances, n, 'tracing_on')).read().strip() == '1'
                           for n in os.listdir(instances))
        else:
            enable = os.path.join(TRACING, 'events', 'kvm', 'kvm_apic_accept_irq', 'enable')

            def sampling():
                return open(enable).read().strip() == '1' and \
                    open(os.path.join(TRACING, 'tracing_on')).read().strip() == '1'
        _wait_for(sampling, proc)
        started = time.monotonic()
        if not use_instance:
            _marker('vfio-avic test: an event in the sample')
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(args_path)
    result = json.loads(out)
    assert result['failed'] is True, (result, err)
    assert result['msg'].startswith('interrupted by signal %d' % signal.SIGTERM)
    assert 'tracing state restored: True' in result['msg']
    assert result['state_restored'] is True and result['errors'] == []
    assert result['method'] == ('instance' if use_instance else 'global')
    assert result['duration'] < 5 and stopped_after < 5
    assert snapshot() == before


FAKE_VIRSH = """#!/bin/sh
echo "$*" >> "$VIRSH_LOG"
case "$3" in
  domstate) echo running ;;
esac
"""


def test_restart_to_capture_without_restart_leaves_the_guest_alone(tracefs, tmp_path, monkeypatch):
    """On the real tracefs; the virsh on PATH stands for the libvirt guest and records any call."""
    if not mounted():
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', TRACING], check=True)
    fake_bin = tmp_path / 'bin'
    fake_bin.mkdir()
    (fake_bin / 'virsh').write_text(FAKE_VIRSH)
    (fake_bin / 'virsh').chmod(0o755)
    log = tmp_path / 'virsh.log'
    monkeypatch.setenv('PATH', '%s:%s' % (fake_bin, os.environ['PATH']))
    monkeypatch.setenv('VIRSH_LOG', str(log))
    before = snapshot()
    status, result = run_ansible_module('vfio.avic.avic_runtime',
                                        'duration=1 restart_to_capture=true domain=win11')
    assert 'FAILED' in status and 'restart missing' in result['msg'], result
    assert 'sampled' not in result, 'refused before sampling'
    assert not log.exists(), 'virsh was called: %s' % log.read_text()
    assert snapshot() == before
    # the control: with consent the same virsh is reached (domstate first, then the shutdown)
    status, result = run_ansible_module('vfio.avic.avic_runtime',
                                        'duration=1 restart_to_capture=true restart=true domain=win11 '
                                        'restart_timeout=1')
    assert 'FAILED' in status and result['restart']['performed'] is False
    assert log.read_text().splitlines()[:2] == ['-c qemu:///system domstate --domain win11',
                                                '-c qemu:///system shutdown --domain win11']
    assert 'did not shut down within 1 s' in result['msg'] and 'restart_timeout=1' in result['msg']
    assert snapshot() == before
