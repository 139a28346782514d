# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt/virsh.py: the one virsh wrapper and its graceful restart.

libvirt is played by a stand-in (``Libvirtd`` below: the domstate words, exit codes and error
lines real virsh prints, a domain that needs some polls to shut down after ``virsh shutdown``),
with a fake clock so that the timeouts take no time. The modules' use of it runs against the
stand-in virsh of test_avic_domain_module.py and the real libvirtd of the molecule guest
scenario and tests/integration.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.libvirt import virsh as libvirt_virsh


class Libvirtd(object):
    """Stand-in for virsh + libvirtd: one domain, off after ``polls`` domstate calls once asked."""

    def __init__(self, state='running', polls=2, start_rc=0, reachable=True):
        self.state, self.polls, self.start_rc, self.reachable = state, polls, start_rc, reachable
        self.calls, self.asked = [], False
        self.now = 1000.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds

    def __call__(self, argv):
        assert argv[:3] == ['/usr/bin/virsh', '-c', 'qemu:///system'], argv
        args = argv[3:]
        self.calls.append(' '.join(args))
        if not self.reachable:
            return 1, '', 'error: failed to connect to the hypervisor\nerror: Failed to connect socket\n'
        assert args[1:2] == ['--domain'] or args[0] == 'define', args
        if args[0] == 'shutdown':
            self.asked = True
            return 0, 'Domain \'g\' is being shutdown\n', ''
        if args[0] == 'domstate':
            if self.asked and self.state == 'running':
                self.polls -= 1
                if self.polls <= 0:
                    self.state = 'shut off'
            return 0, self.state + '\n\n', ''
        if args[0] == 'destroy':
            self.state = 'shut off'
            return 0, 'Domain \'g\' destroyed\n', ''
        if args[0] == 'start':
            if self.start_rc:
                return 1, '', "error: Failed to start domain 'g'\nerror: unsupported configuration\n"
            self.state, self.asked = 'running', False
            return 0, 'Domain \'g\' started\n', ''
        return 1, '', 'error: unknown command %s\n' % args[0]


def virsh_of(daemon):
    return libvirt_virsh.Virsh('/usr/bin/virsh', 'qemu:///system', daemon)


def restart(daemon, **kw):
    return libvirt_virsh.restart(virsh_of(daemon), 'g', kw.pop('timeout', 30), clock=daemon.clock,
                                 sleep=daemon.sleep, **kw)


@pytest.mark.parametrize('state, active', [('running', True), ('paused', True), ('pmsuspended', True),
                                           ('in shutdown', True), ('shut off', False), ('crashed', False)])
def test_paused_and_suspended_guests_count_as_active(state, active):
    assert libvirt_virsh.is_active(state) is active


def test_graceful_restart_waits_for_the_shutdown_then_starts():
    daemon = Libvirtd(polls=3)
    done = restart(daemon)
    assert done['stopped'] and done['started'] and not done['forced'] and done['error'] is None
    assert daemon.calls == ['shutdown --domain g'] + ['domstate --domain g'] * 3 + ['start --domain g']
    assert daemon.state == 'running' and done['shutdown_seconds'] == 2.0


def test_timeout_leaves_it_running_unless_force_off():
    daemon = Libvirtd(polls=10 ** 6)
    done = restart(daemon, timeout=5)
    assert not done['stopped'] and not done['started'] and daemon.state == 'running'
    assert done['error'] == 'domain g did not shut down within 5 s (state running); it was not forced off'
    assert not any(c.startswith(('destroy', 'start')) for c in daemon.calls)
    forced = Libvirtd(polls=10 ** 6)
    done = restart(forced, timeout=5, force_off=True)
    assert done['forced'] and done['started'] and 'destroy --domain g' in forced.calls


def test_interrupted_wait_does_not_start_it_again():
    daemon = Libvirtd(polls=10 ** 6)
    done = restart(daemon, interrupted=lambda: len(daemon.calls) > 2)
    assert done['error'].startswith('interrupted while g was shutting down (state running)')
    assert not done['started'] and 'start --domain g' not in daemon.calls


def test_start_failure_and_the_callers_own_start():
    daemon = Libvirtd(start_rc=1)
    done = restart(daemon)
    assert done['stopped'] and not done['started']
    assert done['error'] == ('domain g did not start again after its shutdown: virsh start --domain g '
                             "failed: error: Failed to start domain 'g' error: unsupported configuration")
    seen = []
    done = restart(Libvirtd(), start=seen.append)
    assert seen == ['g'] and done['started']


def test_one_error_text():
    daemon = Libvirtd(reachable=False)
    with pytest.raises(libvirt_virsh.VirshError,
                       match=r'^libvirt is not reachable at qemu:///system: error: failed to connect to the hypervisor'):
        restart(daemon)
    with pytest.raises(libvirt_virsh.VirshError, match=r'^virsh frobnicate --domain g failed: error: unknown'):
        virsh_of(Libvirtd()).check('frobnicate', '--domain', 'g')
    assert virsh_of(Libvirtd()).domstate('g') == 'running'
