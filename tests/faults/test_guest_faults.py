# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest role under faults, against a real libvirtd under systemd in a container: libvirtd
gone between the facts and the fix, libvirtd restarted during the fix, a converge killed half-way.
No domain is ever lost or half-defined, each failure is named per domain, and the next run fixes
what is left. The domains are the fixture corpus defined as type='qemu' (containers have no
/dev/kvm); the rules read the same elements."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import threading
import time

from conftest import FIXTURES, playbook, write_inventory

DOMAINS = {'win10': 'seed_windows_before.xml', 'linux-defaults': 'pit_missing.xml',
           'already-correct': 'clean_linux.xml'}
QEMU_CONF = 'cgroup_controllers = [ ]\nremember_owner = 0\nsecurity_driver = "none"\n'
ALL = {'avic_guest_all_domains': 'true'}


def libvirt_host(containers, name):
    box = containers(name, image='localhost/vfio-avic-bookworm-libvirt')
    box.sh('cat >> /etc/libvirt/qemu.conf <<EOF\n%sEOF\nsystemctl restart libvirtd' % QEMU_CONF)
    for domain, fixture in sorted(DOMAINS.items()):
        with open(os.path.join(FIXTURES, 'domains', fixture)) as handle:
            xml = handle.read()
        xml = re.sub(r'<name>[^<]*</name>', '<name>%s</name>' % domain, xml, count=1)
        xml = re.sub(r'<uuid>[^<]*</uuid>\s*', '', xml).replace("<domain type='kvm'", "<domain type='qemu'")
        box.write('/var/tmp/%s.xml' % domain, xml)
        box.sh('virsh define /var/tmp/%s.xml >/dev/null' % domain)
    return box


def definitions(box):
    """Every defined domain's persistent XML, without the uuid libvirt made up."""
    names = sorted(n for n in box.sh('virsh list --all --name').stdout.split() if n)
    return dict((n, re.sub(r'<uuid>[^<]*</uuid>', '', box.sh('virsh dumpxml --inactive %s' % n).stdout))
                for n in names)


def backups(box):
    return dict((n, box.read('/var/lib/vfio-avic/backups/%s' % n))
                for n in box.files('/var/lib/vfio-avic/backups'))


def test_libvirtd_gone_after_the_facts_fails_per_domain_and_loses_nothing(containers, tmp_path):
    box = libvirt_host(containers, 'nolibvirt')
    before = definitions(box)
    inventory = write_inventory(tmp_path, [box], {'nolibvirt': ALL})
    run = playbook(inventory, 'guest_libvirtd_stops.yml')
    assert run.rc != 0 and run.failed('nolibvirt')
    for name in DOMAINS:  # every guest is named with the reason
        assert re.search(r'%s: error: libvirt is not reachable' % re.escape(name), run.output), run.output[-4000:]
    box.sh('systemctl reset-failed libvirtd.service libvirtd.socket; systemctl start libvirtd')
    assert definitions(box) == before, 'a definition changed or went missing'
    # libvirtd back: the next run fixes them, the one after changes nothing
    again = playbook(inventory, 'guest.yml')
    assert again.rc == 0, again.output[-4000:]
    fixed = definitions(box)
    assert sorted(fixed) == sorted(before)
    assert "tickpolicy='discard'" in fixed['linux-defaults'] and fixed['win10'] != before['win10']
    last = playbook(inventory, 'guest.yml')
    assert last.rc == 0 and last.recap['nolibvirt']['changed'] == 0, last.output[-4000:]


def test_libvirtd_restarted_during_the_fix_leaves_each_domain_whole(containers, tmp_path):
    box = libvirt_host(containers, 'restarts')
    before = definitions(box)
    inventory = write_inventory(tmp_path, [box], {'restarts': ALL})
    stop = threading.Event()

    def restart_libvirtd():  # the fault: libvirtd restarted over and over while the role runs
        while not stop.is_set():
            # reset-failed: systemd's start rate limit would otherwise keep it down after a few
            box.sh('systemctl reset-failed libvirtd.service libvirtd.socket libvirtd-ro.socket '
                   'libvirtd-admin.socket; systemctl restart libvirtd', check=False)
            time.sleep(0.3)

    fault = threading.Thread(target=restart_libvirtd)
    fault.start()
    try:
        run = playbook(inventory, 'guest.yml')
    finally:
        stop.set()
        fault.join()
    box.sh('systemctl reset-failed libvirtd.service libvirtd.socket libvirtd-ro.socket '
           'libvirtd-admin.socket; systemctl restart libvirtd')
    box.sh('for i in $(seq 60); do virsh list >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1')
    during = definitions(box)
    assert sorted(during) == sorted(before), 'a domain went missing: %s' % sorted(during)
    if run.rc != 0:  # every failure is named per domain
        assert re.search(r'(%s): error: ' % '|'.join(DOMAINS), run.output), run.output[-4000:]
    for name, xml in during.items():  # whole: the old definition or a parseable new one
        assert xml == before[name] or xml.strip().endswith('</domain>'), name
    again = playbook(inventory, 'guest.yml')
    assert again.rc == 0, again.output[-4000:]
    last = playbook(inventory, 'guest.yml')
    assert last.rc == 0 and last.recap['restarts']['changed'] == 0, last.output[-4000:]


def test_a_killed_guest_converge_finishes_on_the_next_run_as_if_never_interrupted(containers, tmp_path):
    killed, reference = libvirt_host(containers, 'gkilled'), libvirt_host(containers, 'greference')
    before = definitions(killed)
    host_vars = {'gkilled': ALL, 'greference': ALL}
    whole = playbook(write_inventory(tmp_path, [reference], host_vars), 'guest.yml')
    assert whole.rc == 0, whole.output[-4000:]
    inventory = write_inventory(tmp_path, [killed], host_vars)
    # killed while the loop is between its first and its second domain
    cut = playbook(inventory, 'guest.yml', kill_when=r'^(changed|ok): \[gkilled\] => \(item=')
    assert cut.killed
    time.sleep(3)
    again = playbook(inventory, 'guest.yml')
    assert again.rc == 0, again.output[-4000:]
    assert definitions(killed) == definitions(reference)
    # every backup is a whole copy of a definition as it was before
    saved = backups(killed)
    assert saved, 'no backup was made'
    originals = [re.sub(r'\s+', '', x) for x in before.values()]
    for name, text in saved.items():
        assert text.strip().endswith('</domain>'), name
        assert re.sub(r'\s+', '', re.sub(r'<uuid>[^<]*</uuid>', '', text)) in originals, name
    last = playbook(inventory, 'guest.yml')
    assert last.rc == 0 and last.recap['gkilled']['changed'] == 0, last.output[-4000:]
