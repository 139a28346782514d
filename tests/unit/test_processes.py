# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""trace/processes.py, the one owner of the running QEMU guests: a /proc tree written the way the
kernel lays it out (cmdline NUL-separated, task/<tid>, fd symlinks), read through HostFiles."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils.trace import processes

from conftest import FIXTURES, write_host_tree


def libvirt_argv():
    """The QEMU command line libvirt's own test suite expects (tests/fixtures/qemu), without
    the environment assignments in front of the program."""
    with open(os.path.join(FIXTURES, 'qemu', 'libvirt-hyperv.args')) as handle:
        argv = shlex.split(handle.read().replace('\\\n', ' '))
    return argv[next(i for i, a in enumerate(argv) if a.startswith('/')):]


def tree(tmp_path):
    root = write_host_tree(tmp_path, guests={
        4242: libvirt_argv(),
        5151: ['/usr/bin/kvm', '-id', '101', '-name', 'win11,debug-threads=on', '-accel', 'kvm'],
        6161: ['/usr/bin/qemu-system-x86_64', '-name', 'plain', '-accel', 'tcg', '-m', '64'],
        7171: ['/usr/bin/python3', '-c', 'pass'],
    }, files={'/etc/pve/qemu-server/101.conf': 'name: win11\n',
              '/proc/4242/task/4242/stat': '', '/proc/4242/task/4250/stat': '',
              '/proc/self/cmdline': ''})
    fd_dir = os.path.join(str(root), 'proc', '5151', 'fd')
    os.makedirs(fd_dir)
    os.symlink('anon_inode:kvm-vm', os.path.join(fd_dir, '11'))
    os.symlink('/dev/null', os.path.join(fd_dir, '0'))
    os.makedirs(os.path.join(str(root), 'proc', '6161', 'fd'))
    return HostFiles(root=str(root))


def test_running_guests_lists_qemu_only_with_their_source(tmp_path):
    reader = tree(tmp_path)
    guests = dict((g['pid'], g) for g in processes.running_guests(reader))
    assert sorted(guests) == [4242, 5151, 6161]
    assert (guests[4242]['name'], guests[4242]['source'], guests[4242]['vmid']) == ('QEMUGuest1', 'libvirt', None)
    assert (guests[5151]['source'], guests[5151]['vmid'], guests[5151]['kvm']) == ('proxmox', 101, True)
    assert (guests[6161]['source'], guests[6161]['kvm']) == ('qemu', False)
    assert all('_summary' in g and g['error'] is None for g in guests.values())


def test_threads_and_vm_owners(tmp_path):
    reader = tree(tmp_path)
    assert processes.guest_threads([4242, 6161], reader) == {4242: 4242, 4250: 4242, 6161: 6161}
    assert processes.vm_owners(reader) == [5151]
    # no fd directory readable at all: unknown, not "nobody"
    assert processes.vm_owners(HostFiles(root=str(tmp_path / 'empty'))) is None


def test_pid_alive():
    assert processes.pid_alive(os.getpid()) is True
    assert processes.pid_alive(1) is True
    assert processes.pid_alive(2 ** 22 + 1) is False
