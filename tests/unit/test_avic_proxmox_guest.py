# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The avic_proxmox_guest module run the way Ansible runs it, against the STAND-IN ``qm`` of
tests/lab/standin/qm.py (there is no Proxmox VE host here): it keeps each VM in
``<root>/etc/pve/qemu-server/<vmid>.conf`` as qm.conf(5) describes it, leaves cpu/args changes of a
running VM pending as qemu-server does, and runs a started VM as a sleeping process whose command
line is the VM's. The host's CPU, kernel and kvm_amd state come from fixture trees (option root);
the VM configurations are qemu-server's own test configurations (tests/fixtures/proxmox)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import subprocess
import sys

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox_fix

from conftest import REPO, fixture_text, run_module_direct, write_host_tree

STANDIN_SOURCE = os.path.join(REPO, 'tests', 'lab', 'standin', 'qm.py')
LINUX = """# a Linux guest with the user's own args and a snapshot
boot: order=scsi0
cores: 4
cpu: host,flags=+pdpe1gb
name: lin
ostype: l26
args: -no-reboot

[before-upgrade]
cores: 2
ostype: l26
"""


@pytest.fixture
def pve(tmp_path, monkeypatch):
    """A Zen 3 host on kernel 6.1 (AVIC, no x2AVIC) with VM 100 (Windows 11 on cpu: host), VM 101
    (Linux, args and a snapshot) and the custom models of qemu-server's tests; ``qm`` the stand-in."""
    root = write_host_tree(
        tmp_path / 'host', cpuinfo_name='zen3_epyc_7763.txt', kernel='6.1.0-26-amd64',
        params={'avic': 'Y', 'npt': 'Y', 'nested': '0'},
        files={'/etc/pve/qemu-server/100.conf': fixture_text('proxmox', 'win11-amd-host-11.0+pve2.conf'),
               '/etc/pve/qemu-server/101.conf': LINUX,
               '/etc/pve/virtual-guest/cpu-models.conf': fixture_text('proxmox', 'cpu-models.conf'),
               '/etc/os-release': 'ID=debian\nVERSION_ID="12"\n'})
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    with open(STANDIN_SOURCE) as handle:
        (bindir / 'qm').write_text('#!%s\n%s' % (sys.executable, handle.read()))
    (bindir / 'qm').chmod(0o755)
    monkeypatch.setenv('QM_STANDIN_ROOT', root)
    # qm only: the QEMU version is unknown unless a test gives it (qemu_version)
    monkeypatch.setenv('PATH', str(bindir))
    yield {'root': root, 'backups': str(tmp_path / 'backups'), 'qm': str(bindir / 'qm')}
    for vmid in (100, 101):
        subprocess.run([str(bindir / 'qm'), 'stop', str(vmid)], check=False)


def conf(pve, vmid):
    with open(os.path.join(pve['root'], 'etc/pve/qemu-server/%d.conf' % vmid)) as handle:
        return handle.read()


def models(pve):
    with open(os.path.join(pve['root'], 'etc/pve/virtual-guest/cpu-models.conf')) as handle:
        return handle.read()


def qm(pve, *args):
    return subprocess.run([pve['qm']] + [str(a) for a in args], check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout


def pid(pve, vmid):
    with open(os.path.join(pve['root'], 'run/qemu-server/%d.pid' % vmid)) as handle:
        return int(handle.read())


def ids(findings):
    return [f['id'] for f in findings]


def args(pve, vmid, **kw):
    return dict(dict(vmid=vmid, root=pve['root'], backup_dir=pve['backups']), **kw)


def test_a_stopped_windows_guest_is_fixed_with_qm_set_and_a_custom_model(pve):
    before_models = models(pve)
    result = run_module_direct('avic_proxmox_guest', args(pve, 100, state='fixed', qemu_version='9.2.0'))
    assert result['changed'] and not result['running'] and not result['restart_required']
    assert ids(result['findings_before']) == ['x2apic_exposed', 'svm_exposed', 'hyperv_synic', 'hyperv_stimer',
                                              'hyperv_vapic', 'hyperv_tlbflush_ipi', 'invtsc_missing']
    assert ids(result['findings_after']) == ['svm_exposed', 'hyperv_tlbflush_ipi', 'invtsc_missing']
    # the model: reported-model host, -x2apic (no x2AVIC on 6.1), hv-avic (kernel >= 5.15, QEMU 9.2)
    # (a section ends with a blank line, as Proxmox's SectionConfig writes them)
    model = 'cpu-model: avic-host-fb761c\n    flags -x2apic;+hv-avic\n    reported-model host\n\n'
    assert result['qm_set'] == ['--cpu', 'custom-avic-host-fb761c']
    assert result['commands'] == ['qm set 100 --cpu custom-avic-host-fb761c']
    # the models already there are kept byte for byte, the new one is added after them
    assert models(pve) == before_models + '\n' + model
    assert conf(pve, 100) == fixture_text('proxmox', 'win11-amd-host-11.0+pve2.conf').replace(
        'cpu: host', 'cpu: custom-avic-host-fb761c')
    with open(result['backup']) as handle:
        assert handle.read() == fixture_text('proxmox', 'win11-amd-host-11.0+pve2.conf')
    assert glob.glob(os.path.join(pve['root'], 'etc/pve/virtual-guest/cpu-models.conf.*~'))
    again = run_module_direct('avic_proxmox_guest', args(pve, 100, state='fixed', qemu_version='9.2.0'))
    assert not again['changed'] and again['qm_set'] == [] and models(pve) == before_models + '\n' + model


def test_a_running_guest_gets_pending_changes_and_is_restarted_only_when_asked(pve):
    qm(pve, 'start', 101)
    first_pid = pid(pve, 101)
    check = run_module_direct('avic_proxmox_guest', args(pve, 101, state='fixed'), check_mode=True, diff=True)
    assert check['changed'] and conf(pve, 101) == LINUX and pid(pve, 101) == first_pid
    assert check['commands'] == [
        "qm set 101 --cpu custom-avic-host-f7db9b,flags=+pdpe1gb --args '-no-reboot -global "
        "kvm-pit.lost_tick_policy=discard'"]
    diff = dict((d['after_header'].split(' ')[0], d) for d in check['diff'])
    assert 'cpu: custom-avic-host-f7db9b,flags=+pdpe1gb' in diff['/etc/pve/qemu-server/101.conf']['after']
    assert 'avic-host-f7db9b' in diff['/etc/pve/virtual-guest/cpu-models.conf']['after']

    fixed = run_module_direct('avic_proxmox_guest', args(pve, 101, state='fixed'))
    assert fixed['changed'] and fixed['running'] and fixed['restart_required'] and not fixed['restarted']
    assert ids(fixed['findings_before']) == ['x2apic_exposed', 'svm_exposed', 'pit_reinject']
    assert ids(fixed['findings_after']) == ['svm_exposed']  # info on 6.1 with nested=0: kept
    assert pid(pve, 101) == first_pid
    # qemu-server keeps cpu and args of a running VM pending and writes the file sorted (as
    # write_vm_config does); the description and the snapshot stay
    assert conf(pve, 101) == (
        '# a Linux guest with the user\'s own args and a snapshot\n'
        'args: -no-reboot\nboot: order=scsi0\ncores: 4\ncpu: host,flags=+pdpe1gb\nname: lin\nostype: l26\n'
        '\n[PENDING]\nargs: -no-reboot -global kvm-pit.lost_tick_policy=discard\n'
        'cpu: custom-avic-host-f7db9b,flags=+pdpe1gb\n'
        '\n[before-upgrade]\ncores: 2\nostype: l26\n')
    again = run_module_direct('avic_proxmox_guest', args(pve, 101, state='fixed'))
    assert not again['changed'] and again['restart_required']  # still pending: evidence, not memory

    restarted = run_module_direct('avic_proxmox_guest', args(pve, 101, state='fixed', restart=True,
                                                             shutdown_timeout=10))
    assert restarted['restarted'] and not restarted['restart_required']
    assert restarted['commands'] == ['qm shutdown 101 --timeout 10', 'qm start 101']
    assert pid(pve, 101) != first_pid and '[PENDING]' not in conf(pve, 101)
    with open('/proc/%d/cmdline' % pid(pve, 101)) as handle:
        assert handle.read().split('\0')[:8] == [
            '/usr/bin/kvm', '-id', '101', '-name', 'lin', '-no-reboot', '-global',
            'kvm-pit.lost_tick_policy=discard']
    last = run_module_direct('avic_proxmox_guest', args(pve, 101, state='fixed', restart=True))
    assert not last['changed'] and not last['restart_required'] and not last['restarted']


def test_old_kernels_and_old_qemu_turn_synic_off_instead(pve, tmp_path):
    result = run_module_direct('avic_proxmox_guest', args(pve, 100, state='fixed'), check_mode=True)
    assert result['notes'] == ['hyperv: hv-avic needs QEMU 6.2 or later, this host has an unknown QEMU: '
                               'SynIC and stimer are turned off']
    assert '-hv-synic;-hv-stimer' in result['cpu_model']['text']
    refused = run_module_direct('avic_proxmox_guest', args(pve, 100, state='fixed', hyperv='avic',
                                                           qemu_version='6.1.0'))
    assert refused['failed'] and 'QEMU 6.2' in refused['msg'] and conf(pve, 100) == fixture_text(
        'proxmox', 'win11-amd-host-11.0+pve2.conf')


@pytest.mark.parametrize('bad, words', [
    ({'vmid': 7}, 'vmid must be'),
    ({'shutdown_timeout': 0}, 'shutdown_timeout must be'),
    ({'qemu_version': 'new'}, 'qemu_version must'),
    ({'hyperv': 'on'}, 'hyperv'),
    ({'vmid': 555}, 'VM 555 is not a VM of this node'),
])
def test_bad_options_are_refused_by_name_and_change_nothing(pve, bad, words):
    before = (conf(pve, 100), models(pve))
    result = run_module_direct('avic_proxmox_guest', dict(args(pve, 100, state='fixed'), **bad))
    assert result['failed'] and words in result['msg']
    assert (conf(pve, 100), models(pve)) == before and not os.path.exists(pve['backups'])


def test_a_different_model_of_the_same_name_is_never_overwritten(pve):
    plan = proxmox_fix.fix_plan(conf(pve, 100), {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False,
                                                 'qemu': '9.2'}, 100)
    taken = models(pve) + '\ncpu-model: %s\n    reported-model EPYC\n' % plan['cpu_model']['name']
    with open(os.path.join(pve['root'], 'etc/pve/virtual-guest/cpu-models.conf'), 'w') as handle:
        handle.write(taken)
    result = run_module_direct('avic_proxmox_guest', args(pve, 100, state='fixed', qemu_version='9.2.0'))
    assert result['failed'] and 'already has a different cpu-model' in result['msg']
    assert models(pve) == taken and 'custom-' not in conf(pve, 100)


def test_audited_without_qm_reads_the_file(pve, monkeypatch):
    monkeypatch.setenv('PATH', os.path.dirname(os.path.abspath(__file__)))  # no qm there
    result = run_module_direct('avic_proxmox_guest', args(pve, 101))
    assert not result['changed'] and result['running'] is None and result['name'] == 'lin'
    assert ids(result['findings_before']) == ['x2apic_exposed', 'svm_exposed', 'pit_reinject']
    fixed = run_module_direct('avic_proxmox_guest', args(pve, 101, state='fixed'))
    assert fixed['failed'] and 'qm is not installed' in fixed['msg'] and conf(pve, 101) == LINUX


def test_a_vm_that_does_not_start_with_the_fix_gets_its_old_cpu_and_args_back_and_runs(pve, monkeypatch):
    qm(pve, 'start', 101)
    first_pid = pid(pve, 101)
    monkeypatch.setenv('QM_STANDIN_REFUSE_CPU', 'custom-avic-')  # the stand-in's fault: QEMU refuses it
    result = run_module_direct('avic_proxmox_guest', args(pve, 101, state='fixed', restart=True))
    assert result['failed'] and 'did not start with the fixed configuration' in result['msg']
    assert 'runs again' in result['msg'] and result['commands'][-2:] == [
        "qm set 101 --cpu host,flags=+pdpe1gb --args -no-reboot", 'qm start 101']
    assert pid(pve, 101) != first_pid and 'status: running' in qm(pve, 'status', 101)
    assert 'cpu: host,flags=+pdpe1gb' in conf(pve, 101) and '[PENDING]' not in conf(pve, 101)
