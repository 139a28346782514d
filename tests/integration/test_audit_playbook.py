# -*- coding: utf-8 -*-
"""playbooks/audit.yml on this machine, with a process that looks like a running QEMU guest.

avic_facts lists running guests from /proc/<pid>/cmdline, so a process named qemu-system-x86_64
is a running guest to it; nothing else about the machine is simulated. The runtime sample needs
root and the KVM tracepoints (skipped otherwise); the rest runs anywhere.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit"))
# the unit tests' conftest makes the checkout importable as ansible_collections.vfio.avic
import conftest  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')
GUEST = 'vfio-avic-audit-test'
HINT = 'Runtime sampling is off'


@pytest.fixture
def running_guest():
    """A process whose command line is a QEMU guest's; ended when the test ends."""
    proc = subprocess.Popen(['qemu-system-x86_64', '-c', 'import time; time.sleep(300)', '-name',
                             'guest=%s,debug-threads=on' % GUEST], executable=sys.executable)
    try:
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def audit(tmp_path, *extra):
    playbook = shutil.which('ansible-playbook') or os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')
    if not os.path.exists(playbook):
        pytest.skip('ansible-playbook is not installed')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'))
    proc = subprocess.run(
        [playbook, 'playbooks/audit.yml', '-e', 'avic_report_dir=%s' % tmp_path,
         '-e', 'avic_audit_domains=false'] + list(extra),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(str(tmp_path), 'avic-audit.json')) as handle:
        return proc.stdout, json.load(handle)


def test_audit_says_how_to_turn_runtime_sampling_on_when_guests_run(running_guest, tmp_path):
    out, report = audit(tmp_path)
    text = ' '.join(out.split())  # the callback wraps long messages
    assert HINT + ', and 1 host(s) run guests: localhost.' in text, out
    assert 'run the audit again with -e avic_audit_runtime=true' in text
    assert '(it samples 5 s per host;' in text
    assert 'runtime' not in report['hosts']['localhost']['summary']
    assert running_guest in [g['pid'] for g in report['hosts']['localhost']['facts']['guests']]


def test_audit_without_running_guests_gives_no_hint(tmp_path):
    from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles  # pylint: disable=import-outside-toplevel
    from ansible_collections.vfio.avic.plugins.module_utils.trace import processes  # pylint: disable=import-outside-toplevel
    if processes.running_guests(HostFiles()):
        pytest.skip('QEMU guests run on this machine')
    out, _report = audit(tmp_path)
    assert HINT not in out


def test_audit_with_runtime_sampling_reports_the_guest_and_no_hint(running_guest, tmp_path):
    if os.geteuid() != 0:
        pytest.skip('needs root for tracefs')
    if not os.path.isdir('/sys/module/kvm'):
        pytest.skip('the kvm module is not loaded on this machine: no KVM tracepoints')
    out, report = audit(tmp_path, '-e', 'avic_audit_runtime=true', '-e', 'avic_audit_runtime_seconds=1')
    assert HINT not in out
    guests = dict((g['name'], g) for g in report['hosts']['localhost']['guests'])
    assert guests[GUEST]['runtime']['verdict'] == 'no_data', guests[GUEST]
    assert report['hosts']['localhost']['summary']['runtime'].get('no_data', 0) >= 1
