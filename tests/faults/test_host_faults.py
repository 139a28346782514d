# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host role under faults, on real containers: a write that fails (full and read-only file
systems) and a converge killed half-way. Nothing is lost and the next run converges."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from conftest import playbook, write_inventory

GRUB = ('# If you change this file, run \'update-grub\' afterwards\nGRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n'
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80"\nGRUB_CMDLINE_LINUX=""\n')
KVM_CONF = '# from a forum post\noptions kvm_amd nested=1 sev=0\n'
OLD_BACKUP = '/etc/default/grub.4242.2026-01-01@00:00:00~'
SCRATCH = ('.vfio-avic-',)


def no_scratch_files(box, *directories):
    left = [(d, n) for d in directories for n in box.files(d) if n.startswith(SCRATCH)]
    assert left == [], 'temporary files left behind: %s' % left


def test_a_failed_write_leaves_every_file_intact_and_stops_that_host_only(containers, tmp_path):
    modprobe_dir = tmp_path / 'modprobe.d'
    modprobe_dir.mkdir()
    (modprobe_dir / 'kvm.conf').write_text(KVM_CONF)
    full = containers('full', mounts=[('--mount', 'type=tmpfs,destination=/etc/default,tmpfs-size=65536')])
    read_only = containers('readonly', mounts=[('-v', '%s:/etc/modprobe.d:ro' % modprobe_dir)])
    fine = containers('fine')
    for box in (full, read_only, fine):
        box.write('/etc/default/grub', GRUB)
    full.write(OLD_BACKUP, 'GRUB_CMDLINE_LINUX_DEFAULT="an older line"\n')
    # the fault: /etc/default is full (a 64 KiB tmpfs, filled up)
    full.sh('dd if=/dev/zero of=/etc/default/zz-filler bs=1k 2>/dev/null || true')
    assert full.sh('df --output=avail /etc/default | tail -1').stdout.strip() == '0'
    inventory = write_inventory(tmp_path, [full, read_only, fine])

    run = playbook(inventory, 'host.yml')
    assert run.rc != 0
    assert run.failed('full') and run.failed('readonly') and not run.failed('fine'), run.recap
    assert 'cannot write /etc/default/grub: No space left on device' in run.output
    assert 'cannot write /etc/modprobe.d/vfio-avic-kvm_amd.conf: Read-only file system' in run.output
    # the originals are intact, the older backup is still there, no scratch file is left
    assert full.read('/etc/default/grub') == GRUB
    assert full.read(OLD_BACKUP) == 'GRUB_CMDLINE_LINUX_DEFAULT="an older line"\n'
    assert (modprobe_dir / 'kvm.conf').read_text() == KVM_CONF
    assert sorted(p.name for p in modprobe_dir.iterdir()) == ['kvm.conf']
    no_scratch_files(full, '/etc/default', '/etc/modprobe.d')
    # the host without a fault went on to the end
    assert 'iommu=pt' in fine.read('/etc/default/grub')
    assert 'avic=1' in fine.read('/etc/modprobe.d/vfio-avic-kvm_amd.conf')

    # space again: the next run converges, and the one after changes nothing
    full.sh('rm -f /etc/default/zz-filler')
    inventory = write_inventory(tmp_path, [full, fine])
    again = playbook(inventory, 'host.yml')
    assert again.rc == 0 and not again.failed('full'), again.output[-3000:]
    assert full.read('/etc/default/grub') == GRUB.replace('10de:1b80"', '10de:1b80 iommu=pt"')
    assert full.read(OLD_BACKUP) == 'GRUB_CMDLINE_LINUX_DEFAULT="an older line"\n'
    assert [n for n in full.files('/etc/default') if n.startswith('grub.') and n != OLD_BACKUP.rsplit('/', maxsplit=1)[-1]], \
        'the edit made its own backup'
    last = playbook(inventory, 'host.yml')
    assert last.rc == 0 and last.recap['full']['changed'] == 0 and last.recap['fine']['changed'] == 0, last.recap


def host_state(box):
    """The files the host role manages, without the backups' time-stamped names."""
    return dict((path, box.read(path)) for path in (
        '/etc/default/grub', '/etc/modprobe.d/kvm.conf', '/etc/modprobe.d/vfio-avic-kvm_amd.conf'))


def backups(box, directory, name):
    return [n for n in box.files(directory) if n.startswith(name + '.') and n.endswith('~')]


# Half-way: the modprobe.d files are written (a backup of the conflicting one made), the command
# line is being edited.
KILL_AT = r'TASK \[vfio\.avic\.host : Put the IOMMU arguments on the kernel command line\]'


def test_a_killed_converge_finishes_on_the_next_run_as_if_never_interrupted(containers, tmp_path):
    kill_at = KILL_AT
    killed, reference = containers('killed'), containers('reference')
    for box in (killed, reference):
        box.write('/etc/default/grub', GRUB)
        box.write('/etc/modprobe.d/kvm.conf', KVM_CONF)
    host_vars = {'killed': {'avic_host_comment_conflicts': 'true'},
                 'reference': {'avic_host_comment_conflicts': 'true'}}
    whole = playbook(write_inventory(tmp_path, [reference], host_vars), 'host.yml')
    assert whole.rc == 0, whole.output[-3000:]

    inventory = write_inventory(tmp_path, [killed], host_vars)
    cut = playbook(inventory, 'host.yml', kill_when=kill_at)
    assert cut.killed and cut.rc != 0
    time.sleep(3)  # a module the controller left behind finishes or dies in the container
    again = playbook(inventory, 'host.yml')
    assert again.rc == 0, again.output[-3000:]
    assert host_state(killed) == host_state(reference)
    # every backup is a whole copy of what the file held before, none is half-written
    for directory, name, original in (('/etc/default', 'grub', GRUB), ('/etc/modprobe.d', 'kvm.conf', KVM_CONF)):
        found = backups(killed, directory, name)
        assert found, 'no backup of %s/%s' % (directory, name)
        assert all(killed.read('%s/%s' % (directory, n)) == original for n in found), found
    no_scratch_files(killed, '/etc/default', '/etc/modprobe.d')
    last = playbook(inventory, 'host.yml')
    assert last.rc == 0 and last.recap['killed']['changed'] == 0, last.output[-3000:]
