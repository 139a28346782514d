# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QEMU guests running on a host, from /proc (stdlib only): the one owner of listing them.

running_guests() is what avic_facts reports as ``guests`` and what the trace sampler
attributes events to; guest_threads() and vm_owners() give the sampler the threads of those
processes and the processes holding a KVM VM. Everything reads through a hostfs.HostFiles, so a
fixture tree is read the same way; nothing here writes anything.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox as proxmox_guest
from ansible_collections.vfio.avic.plugins.module_utils.guests import qemu as qemu_guest

# 'kvm' is Proxmox VE's QEMU (/usr/bin/kvm, qemu-server's config_to_command)
QEMU_NAMES = ('qemu-system-x86_64', 'qemu-kvm', 'qemu-system-i386', 'kvm')


def guest_source(reader, argv, name):
    """('libvirt'|'proxmox'|'qemu', Proxmox VM ID or None) of a QEMU process: libvirt names its
    guests '-name guest=...' and keeps /run/libvirt/qemu/<name>.pid; qemu-server passes '-id
    <vmid>' for /etc/pve/qemu-server/<vmid>.conf."""
    _program, options = qemu_guest.parse_options(argv)
    values = dict((opt, value) for opt, value in options if value is not None)
    vmid = values.get('id')
    if vmid and vmid.isdigit() and reader.exists('%s/%s.conf' % (proxmox_guest.CONF_DIR, vmid)):
        return 'proxmox', int(vmid)
    if (values.get('name') or '').startswith('guest=') or \
            (name and reader.exists('/run/libvirt/qemu/%s.pid' % name)):
        return 'libvirt', None
    return 'qemu', None


def running_guests(reader):
    """Running QEMU processes: [{pid, name, kvm, source, vmid, error, _summary}], the guest
    model of their command line under '_summary' (gather() audits it once the host facts are
    known and removes it). ``reader``: a hostfs.HostFiles."""
    guests = []
    for entry in reader.listdir('/proc'):
        if not entry.isdigit():
            continue
        raw = reader.read('/proc/%s/cmdline' % entry)
        if not raw:
            continue
        argv = [a for a in raw.split('\0') if a]
        if not argv or os.path.basename(argv[0]) not in QEMU_NAMES:
            continue
        name = qemu_guest.guest_name(argv)
        source, vmid = guest_source(reader, argv, name)
        try:
            summary, error = qemu_guest.qemu_summary(argv), None
        except qemu_guest.QemuArgvError as exc:
            summary, error = None, str(exc)
        guests.append({
            'pid': int(entry),
            'name': name,
            'kvm': bool(summary and summary['type'] == 'kvm'),
            'source': source,
            'vmid': vmid,
            'error': error,
            '_summary': summary,
        })
    return guests


def guest_threads(pids, reader):
    """{tid: pid} for every thread of the given processes."""
    threads = {}
    for pid in pids:
        for tid in reader.listdir('/proc/%d/task' % pid):
            if tid.isdigit():
                threads[int(tid)] = pid
        threads.setdefault(pid, pid)
    return threads


def vm_owners(reader):
    """Pids holding a KVM VM file descriptor (anon_inode:kvm-vm), or None when unreadable."""
    owners = []
    readable = False
    for entry in reader.listdir('/proc'):
        if not entry.isdigit():
            continue
        fd_dir = reader.real('/proc/%s/fd' % entry)
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        readable = True
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target == 'anon_inode:kvm-vm':
                owners.append(int(entry))
                break
    return owners if readable else None


def pid_alive(pid):
    """Whether a process of this pid exists (also one of another user)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
