# -*- coding: utf-8 -*-
"""The parts of the VM lab script that need no VM: partition table, cache key, arguments."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import vm  # noqa: E402 pylint: disable=wrong-import-position

SCRIPT = os.path.join(REPO, 'tests', 'lab', 'vm.py')


def test_partition_table_has_one_bootable_linux_partition_after_the_grub_gap():
    table = vm.mbr(4096 * 2048)
    assert len(table) == 66 and table[-2:] == b'\x55\xaa'
    status, _chs1, ptype, _chs2, start, sectors = struct.unpack('<B3sB3sII', table[:16])
    assert (status, ptype, start) == (0x80, 0x83, vm.PART_START)
    assert start + sectors == 4096 * 2048
    assert table[16:64] == b'\x00' * 48


def test_cache_key_follows_the_script_and_the_suite(monkeypatch):
    key = vm.inputs_hash()
    assert len(key) == 16 and key == vm.inputs_hash()
    monkeypatch.setattr(vm, 'SUITE', 'trixie')
    assert vm.inputs_hash() != key


def test_bad_arguments_are_refused_without_touching_anything(tmp_path):
    env = dict(os.environ, VFIO_AVIC_VM_DIR=str(tmp_path))
    usage = subprocess.run([sys.executable, SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and 'vm.py build' in usage.stderr
    missing = subprocess.run([sys.executable, SCRIPT, 'start'], env=env, capture_output=True, text=True,
                             check=False)
    assert missing.returncode == 2 and 'needs an instance name' in missing.stderr
    bad = subprocess.run([sys.executable, SCRIPT, 'status', '../x'], env=env, capture_output=True, text=True,
                         check=False)
    assert bad.returncode != 0 and 'instance name' in bad.stderr
    status = subprocess.run([sys.executable, SCRIPT, 'status', 'nothing'], env=env, capture_output=True,
                            text=True, check=False)
    assert status.returncode == 0 and '"running": false' in status.stdout
    assert os.listdir(str(tmp_path)) == []


def test_a_pidfile_naming_another_process_is_not_taken_for_the_vm(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, 'VM_DIR', str(tmp_path))
    inst = tmp_path / 'instances' / 'lab'
    inst.mkdir(parents=True)
    # this test's own process is alive but is not QEMU: stop must never signal it
    (inst / 'qemu.pid').write_text('%d\n' % os.getpid())
    assert vm.is_our_qemu(os.getpid(), 'lab') is False
    assert vm.pid_of('lab') is None
    sleeper = subprocess.Popen(['sleep', '30'])
    try:
        (inst / 'qemu.pid').write_text('%d\n' % sleeper.pid)
        assert vm.pid_of('lab') is None
        vm.stop('lab')
        assert sleeper.poll() is None, 'a process that is not the instance QEMU was signalled'
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_shows_the_console_tail_and_keeps_the_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vm, 'VM_DIR', str(tmp_path))
    inst = tmp_path / 'instances' / 'lab'
    inst.mkdir(parents=True)
    lines = ['[    %d.000000] boot line %d' % (i, i) for i in range(2000)]
    (inst / 'console.log').write_text('\n'.join(lines) + '\nKernel panic - not syncing: VFS\n')
    vm.stop('lab')
    err = capsys.readouterr().err
    assert 'Kernel panic - not syncing' in err and 'boot line 1999' in err
    assert 'boot line 0\n' not in err, 'only the tail is shown'
    assert not inst.exists()
    kept = (tmp_path / 'instances' / 'lab-console.log').read_text()
    assert kept.startswith('[    0.000000] boot line 0') and kept.endswith('VFS\n')


def test_the_kvm_variant_is_its_own_cached_image():
    assert vm.inputs_hash(kvm=True) != vm.inputs_hash()
    assert vm.image_paths(kvm=True)['image'].endswith('-kvm.raw')
    assert vm.image_paths(kvm=True)['key'] == vm.image_paths()['key']


def test_the_newest_kernel_variant_is_its_own_image_of_its_own_release(tmp_path, monkeypatch):
    paths = vm.image_paths(kvm=True, newest=True)
    assert paths['image'].endswith('-kvm-%s.raw' % vm.NEWEST) and paths['key'] == vm.image_paths()['key']
    # a backports kernel is installed into an image of the release it is built for
    assert vm.NEWEST_SUITE == vm.NEWEST_BASE + '-backports'
    monkeypatch.setattr(vm, 'SUITE', vm.NEWEST_BASE)
    assert vm.image_paths(kvm=True, newest=True)['image'].endswith(
        'debian-%s-kvm-%s.raw' % (vm.NEWEST_BASE, vm.NEWEST))
    # --newest without --kvm is refused before anything is built
    env = dict(os.environ, VFIO_AVIC_VM_DIR=str(tmp_path))
    refused = subprocess.run([sys.executable, SCRIPT, 'build', '--newest'], env=env, capture_output=True,
                             text=True, check=False)
    assert refused.returncode == 2 and 'give both' in refused.stderr
    assert os.listdir(str(tmp_path)) == []
    assert 'qemu-system-x86' in vm.KVM_PACKAGES and 'python3-libvirt' in vm.KVM_PACKAGES
    # the payload idles until its power button is pressed: virsh shutdown is graceful
    assert 'Power Button' in vm.PAYLOAD_INIT and 'poweroff -f' in vm.PAYLOAD_INIT


LAB_FIXTURES = ('seed_windows_before.xml', 'pit_missing.xml', 'clean_linux.xml')


@pytest.mark.parametrize('fixture', LAB_FIXTURES)
def test_a_lab_domain_audits_as_its_fixture(fixture):
    from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain  # pylint: disable=import-outside-toplevel
    import lab_domain  # pylint: disable=import-outside-toplevel,import-error
    with open(os.path.join(REPO, 'tests', 'fixtures', 'domains', fixture)) as handle:
        text = handle.read()
    lab = lab_domain.lab_domain(text, 'lab-x')
    host = {'kernel': '6.1', 'avic': True, 'x2avic': False}
    ids = sorted(f['id'] for f in libvirt_domain.audit_domain(text, host))
    lab_ids = sorted(f['id'] for f in libvirt_domain.audit_domain(lab, host))
    # one vCPU instead of many changes nothing the audit reads but the vCPU count
    assert lab_ids == [i for i in ids if i != 'too_many_vcpus']
    root = ET.fromstring(lab)
    assert root.get('type') == 'kvm' and root.findtext('name') == 'lab-x'
    assert root.findtext('os/kernel') == lab_domain.PAYLOAD + '/vmlinuz'
    assert [d.tag for d in root.find('devices')] == ['emulator', 'serial', 'memballoon']
    assert root.findtext('vcpu') == '1'
