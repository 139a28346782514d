# -*- coding: utf-8 -*-
"""vfio.avic.avic_runtime against the real tracefs of the machine the tests run on.

Needs root and a kernel with the KVM tracepoints (the kvm module loaded); skipped otherwise.
No guest runs on a test machine: the module must say so, and leave tracing exactly as it was,
mounted or not, with the events someone else enabled still enabled.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit'))

from conftest import run_ansible_module  # noqa: E402 pylint: disable=wrong-import-position

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
