# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QEMU command-line audit: real command lines (tests/fixtures/qemu/README.md), libvirt's own
command lines for the domain fixtures, and a real QEMU process read through gather_facts."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.filter.avic_qemu import qemu_avic_issues
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.guests import qemu as qemu_guest
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain
from ansible_collections.vfio.avic.plugins.module_utils.trace import processes

from conftest import REPO

FIXTURES = os.path.join(REPO, 'tests', 'fixtures')
ZEN3_61 = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False}
ZEN4_68 = {'kernel': '6.8.0-45-generic', 'avic': True, 'x2avic': True}
OLD_54 = {'kernel': '5.4.0-42-generic', 'avic': True, 'x2avic': False, 'nested': True}
HOSTS = (ZEN3_61, ZEN4_68, OLD_54)


def shell_argv(text):
    """The arguments of a shell command line in a fixture: comments and a leading environment
    dropped, up to a pipe."""
    words = shlex.split(text.replace('\\\n', ' '), comments=True)
    while words and re.match(r'^[A-Za-z_][A-Za-z0-9_]*=', words[0]):
        words.pop(0)
    if '|' in words:
        words = words[:words.index('|')]
    return words


def fixture_argv(name):
    with open(os.path.join(FIXTURES, 'qemu', name)) as handle:
        text = handle.read()
    if name.endswith('.script'):
        text = text[text.index('qemu-system-x86_64'):]
    if name.endswith('.profile'):
        text = 'qemu-system-x86_64 ' + text
    return shell_argv(text)


def ids(findings):
    return [f['id'] for f in findings]


# fixture -> (ids on ZEN3_61, ids on ZEN4_68)
EXPECTED = {
    # TCG (-accel tcg), qemu64, PIT in delay mode: libvirt's <timer name='pit' tickpolicy='delay'/>
    'libvirt-kvm-pit-delay.args': (
        ['domain_not_kvm', 'cpu_mode_not_host', 'x2apic_exposed', 'pit_reinject'],
        ['domain_not_kvm', 'cpu_mode_not_host', 'pit_reinject']),
    'libvirt-kvm-pit-discard.args': (
        ['domain_not_kvm', 'cpu_mode_not_host', 'x2apic_exposed'],
        ['domain_not_kvm', 'cpu_mode_not_host']),
    # every enlightenment with hv-avic=on: SynIC does not inhibit, vapic/ipi are not reported
    # (hv-avic withdraws the vapic recommendation); no hv-time, no invtsc; no -global: reinject
    'libvirt-hyperv.args': (
        ['domain_not_kvm', 'cpu_mode_not_host', 'x2apic_exposed', 'pit_reinject',
         'hyperv_tlbflush_ipi', 'hypervclock_missing', 'invtsc_missing'],
        ['domain_not_kvm', 'cpu_mode_not_host', 'pit_reinject', 'hyperv_tlbflush_ipi',
         'hypervclock_missing', 'invtsc_missing']),
    'libvirt-hyperv-passthrough.args': (
        ['domain_not_kvm', 'cpu_mode_not_host', 'x2apic_exposed', 'pit_reinject',
         'hyperv_passthrough', 'hypervclock_missing', 'invtsc_missing'],
        ['domain_not_kvm', 'cpu_mode_not_host', 'pit_reinject', 'hyperv_passthrough',
         'hypervclock_missing', 'invtsc_missing']),
    # -cpu host with hv_vapic and hv_time, kvm=off, no PIT global (reinject), 4 vCPUs in 1x2x2
    'script-windows-kvm-server-cli.script': (
        ['x2apic_exposed', 'svm_exposed', 'pit_reinject', 'hyperv_vapic', 'invtsc_missing'],
        ['svm_exposed', 'pit_reinject', 'hyperv_vapic', 'invtsc_missing']),
    # the single-GPU-passthrough profile: hv_synic and hv_stimer without hv-avic
    'script-windows10-vfio.profile': (
        ['x2apic_exposed', 'svm_exposed', 'pit_reinject', 'hyperv_synic', 'hyperv_stimer',
         'hyperv_vapic', 'invtsc_missing'],
        ['svm_exposed', 'pit_reinject', 'hyperv_synic', 'hyperv_stimer', 'hyperv_vapic',
         'invtsc_missing']),
}


def test_every_command_line_fixture_has_expectations():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FIXTURES, 'qemu', '*'))
                   if not p.endswith(('.md', '.xml')))
    assert names == sorted(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_command_line_corpus(name):
    argv = fixture_argv(name)
    zen3, zen4 = EXPECTED[name]
    assert ids(qemu_guest.audit_qemu(argv, ZEN3_61)) == zen3
    assert ids(qemu_guest.audit_qemu(argv, ZEN4_68)) == zen4
    # /proc/<pid>/cmdline text gives the same findings as the list
    assert qemu_guest.audit_qemu('\0'.join(argv) + '\0', ZEN4_68) == qemu_guest.audit_qemu(argv, ZEN4_68)


def test_what_the_corpus_command_lines_say():
    script = qemu_guest.qemu_summary(fixture_argv('script-windows-kvm-server-cli.script'))
    assert (script['type'], script['cpu_mode'], script['vcpus']) == ('kvm', 'host-passthrough', 4)
    assert script['topology'] == {'sockets': 1, 'dies': 1, 'clusters': 1, 'cores': 2, 'threads': 2}
    assert script['hyperv'] == {'mode': 'custom', 'relaxed': True, 'spinlocks': True, 'vapic': True}
    assert script['timers'] == {'hypervclock': {'name': 'hypervclock', 'present': 'yes'}}
    profile = qemu_guest.qemu_summary(fixture_argv('script-windows10-vfio.profile'))
    assert profile['timers']['hpet'] == {'name': 'hpet', 'present': 'no'}
    assert profile['vcpus'] == 4 and profile['hyperv']['synic'] and profile['hyperv']['stimer']
    delay = qemu_guest.qemu_summary(fixture_argv('libvirt-kvm-pit-delay.args'))
    assert delay['name'] == 'QEMUGuest1' and delay['timers']['pit'] == {'name': 'pit', 'tickpolicy': 'delay'}
    assert qemu_guest.qemu_summary(fixture_argv('libvirt-hyperv-passthrough.args'))['hyperv'] == {
        'mode': 'passthrough'}


def test_libvirt_command_line_and_its_xml_give_the_same_findings():
    """libvirt's tests/qemuxmlconfdata pair: hyperv.xml and the command line libvirt runs for it."""
    argv = fixture_argv('libvirt-hyperv.args')
    with open(os.path.join(FIXTURES, 'qemu', 'libvirt-hyperv.xml')) as handle:
        xml = handle.read()
    for host in HOSTS:
        assert ids(qemu_guest.audit_qemu(argv, host)) == ids(libvirt_domain.audit_domain(xml, host))
    model = qemu_guest.qemu_summary(argv)
    assert model['hyperv'] == libvirt_domain.domain_summary(libvirt_domain.parse_domain(xml))['hyperv']


@pytest.mark.parametrize('spelling', [
    ['-enable-kvm', '-cpu', 'host,-x2apic,-svm,+invtsc'],
    ['-machine', 'q35,accel=kvm:tcg', '-cpu', 'host,x2apic=off,svm=off,invtsc=on'],
    ['-accel', 'kvm', '-cpu', 'host,x2apic=on,svm=on,invtsc=on,-x2apic,-svm'],
    ['--accel', 'kvm', '--cpu', 'host,x2apic_off_is_not_a_flag=on,-x2apic,-svm,+invtsc'],
])
def test_old_and_new_spellings_mean_the_same(spelling):
    model = qemu_guest.qemu_summary(['qemu-system-x86_64'] + spelling)
    assert model['type'] == 'kvm' and model['cpu_mode'] == 'host-passthrough'
    assert model['cpu_features']['x2apic'] == model['cpu_features']['svm'] == 'disable'
    assert model['cpu_features']['invtsc'] == 'require'


def test_irqchip_pit_hyperv_sev_and_topology():
    split = qemu_guest.qemu_summary(['qemu-system-x86_64', '-machine', 'q35,kernel-irqchip=split',
                                    '-accel', 'kvm'])
    assert split['ioapic_driver'] == 'qemu'
    accel = qemu_guest.qemu_summary(['qemu-system-x86_64', '-accel', 'kvm,kernel-irqchip=split'])
    assert accel['ioapic_driver'] == 'qemu'
    assert ids(qemu_guest.audit_qemu(['qemu-system-x86_64', '-accel', 'kvm', '-cpu', 'host,-x2apic,-svm'],
                                     OLD_54)) == ['pit_reinject', 'split_irqchip_required']
    old = qemu_guest.qemu_summary(['qemu-system-x86_64', '-enable-kvm', '-no-kvm-pit-reinjection'])
    assert old['timers']['pit'] == {'name': 'pit', 'tickpolicy': 'discard'}
    long_form = qemu_guest.qemu_summary(['qemu-system-x86_64', '-global',
                                        'driver=kvm-pit,property=lost_tick_policy,value=discard'])
    assert long_form['timers']['pit']['tickpolicy'] == 'discard'
    hv = qemu_guest.qemu_summary(['qemu-system-x86_64', '-cpu', 'host,hv_synic,hv-stimer=on,hv-apicv,-hv-vapic'])
    assert hv['hyperv'] == {'mode': 'custom', 'synic': True, 'stimer': True, 'avic': True, 'vapic': False}
    sev = ['qemu-system-x86_64', '-accel', 'kvm', '-object',
           '{"qom-type":"sev-guest","id":"lsec0","cbitpos":51,"reduced-phys-bits":1,"policy":5}',
           '-machine', 'pc-q35-7.2,confidential-guest-support=lsec0']
    assert qemu_guest.qemu_summary(sev)['sev'] == {'type': 'sev', 'policy': 5}
    assert 'sev_guest' in ids(qemu_guest.audit_qemu(sev, ZEN4_68))
    unused = ['qemu-system-x86_64', '-object', 'sev-snp-guest,id=s0,policy=0x30000']
    assert qemu_guest.qemu_summary(unused)['sev'] is None
    big = qemu_guest.qemu_summary(['qemu-system-x86_64', '-smp', 'sockets=3,cores=72,threads=1'])
    assert (big['vcpus'], big['max_apic_id']) == (216, 2 * 128 + 71)
    hotplug = qemu_guest.qemu_summary(['kvm', '-smp', '1,sockets=1,cores=4,maxcpus=4',
                                      '-device', 'host-x86_64-cpu,id=cpu2',
                                       '-device', 'host-x86_64-cpu,id=cpu3'])
    assert (hotplug['type'], hotplug['vcpus'], hotplug['max_apic_id']) == ('kvm', 3, 3)


def test_bad_command_lines_are_refused_with_the_fix():
    for bad, what in (('', 'empty'), ([], 'empty'), ('qemu-system-x86_64 -enable-kvm', 'NUL'),
                      (42, 'int'), (['qemu-system-x86_64', '-smp', 'cores=four'], 'cores')):
        with pytest.raises(qemu_guest.QemuArgvError, match=what):
            qemu_guest.audit_qemu(bad, ZEN4_68)
    with pytest.raises(AnsibleFilterError, match='qemu_argv'):
        qemu_avic_issues('', ZEN4_68)
    with pytest.raises(AnsibleFilterError, match='missing x2avic'):
        qemu_avic_issues(['qemu-system-x86_64'], {'kernel': '6.8.0', 'avic': True})
    assert ids(qemu_avic_issues(['qemu-system-x86_64'], {
        'kernel': '6.8.0', 'avic': False, 'x2avic': False,
        'cpu': {'vendor': 'intel', 'vendor_id': 'GenuineIntel'}})) == ['not_amd']


# --- libvirt's own command line for every domain fixture (virsh domxml-to-native) ---

# A domain fixture libvirt 9.0 turns into a command line that disagrees with the XML audit:
# <timer name='pit' present='no'/> still gives "-global kvm-pit.lost_tick_policy=delay" (the
# in-kernel PIT stays, in reinject mode), measured with virsh domxml-to-native.
PIT_NOT_PRESENT = 'pit_not_present.xml'


@pytest.fixture(scope='module')
def libvirt_argv(tmp_path_factory):
    """{fixture name: argv} that libvirt builds for tests/fixtures/domains/*.xml, through the
    embedded QEMU driver (no daemon); fixtures libvirt refuses on this machine are left out."""
    virsh = shutil.which('virsh')
    if not virsh:
        pytest.skip('virsh is not installed')
    root = str(tmp_path_factory.mktemp('libvirt-embed'))
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FIXTURES, 'domains', '*.xml'))
                   if not p.endswith('malformed.xml'))
    script = ''.join('echo @@%s@@\ndomxml-to-native qemu-argv %s\n'
                     % (n, os.path.join(FIXTURES, 'domains', n)) for n in names)
    proc = subprocess.run([virsh, '-q', '-c', 'qemu:///embed?root=%s' % root], input=script,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False)
    result, current = {}, None
    # interactive virsh goes on after a refused domain; its prompt follows the output unbroken
    for line in proc.stdout.splitlines():
        if current and line.startswith('LC_ALL='):
            result[current] = shell_argv(line.split('virsh # ')[0])
            current = None
        marker = re.search(r'@@([\w.-]+)@@', line)
        if marker:
            current = marker.group(1)
    if not result:
        pytest.skip('libvirt builds no command line here: %s' % proc.stderr.strip()[-300:])
    return result


def test_libvirt_command_lines_give_the_xml_findings(libvirt_argv):
    compared = 0
    for name, argv in sorted(libvirt_argv.items()):
        with open(os.path.join(FIXTURES, 'domains', name)) as handle:
            xml = handle.read()
        for host in HOSTS:
            assert ids(qemu_guest.audit_qemu(argv, host)) == ids(libvirt_domain.audit_domain(xml, host)), \
                (name, host['kernel'])
        compared += 1
    assert compared >= 15, sorted(libvirt_argv)


def test_libvirt_keeps_the_pit_for_present_no(libvirt_argv):
    argv = libvirt_argv.get(PIT_NOT_PRESENT)
    if argv is None:
        pytest.skip('libvirt refused %s here' % PIT_NOT_PRESENT)
    assert 'kvm-pit.lost_tick_policy=delay' in argv
    assert 'pit_reinject' in ids(qemu_guest.audit_qemu(argv, ZEN4_68))


# --- a real QEMU process, read through avic_gather ---

def test_a_running_qemu_process_is_audited_by_avic_facts():
    """Starts qemu-system-x86_64 under TCG with the CPU, PIT and machine options of the
    single-GPU-passthrough profile that TCG accepts, and reads /proc/<pid>/cmdline through
    avic_gather; the process is killed by its PID in every case."""
    qemu = shutil.which('qemu-system-x86_64')
    if not qemu:
        pytest.skip('qemu-system-x86_64 is not installed')
    argv = [qemu, '-S', '-display', 'none', '-nodefaults', '-name', 'avic-tcg-probe',
            '-accel', 'tcg', '-machine', 'q35,hpet=off', '-smp', '2,sockets=1,cores=2,threads=1',
            # hv_vpindex (and so hv_synic) is refused by QEMU 7.2 here once /dev/kvm exists
            '-cpu', 'qemu64,hv_relaxed,hv_time,hv_vapic,-x2apic',
            '-global', 'kvm-pit.lost_tick_policy=discard', '-m', '64']
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        guest = None
        for _attempt in range(50):
            if proc.poll() is not None:
                pytest.fail('QEMU exited with %s: %s' % (proc.returncode, proc.stderr.read().decode()))
            guests = processes.running_guests(HostFiles(root='/'))
            guest = next((g for g in guests if g['pid'] == proc.pid), None)
            if guest is not None:
                break
            time.sleep(0.1)
        assert guest is not None, 'avic_gather did not list QEMU pid %d' % proc.pid
        assert (guest['name'], guest['kvm'], guest['source']) == ('avic-tcg-probe', False, 'qemu')
        model = guest['_summary']
        assert model['timers']['pit'] == {'name': 'pit', 'tickpolicy': 'discard'}
        assert model['timers']['hpet'] == {'name': 'hpet', 'present': 'no'}
        assert model['cpu_features']['x2apic'] == 'disable' and model['vcpus'] == 2
        with open('/proc/%d/cmdline' % proc.pid, 'rb') as handle:
            raw = handle.read()
        found = ids(qemu_guest.audit_qemu(raw, ZEN3_61))
        assert found == ['domain_not_kvm', 'cpu_mode_not_host', 'hyperv_vapic', 'invtsc_missing']
        assert ids(domain_rules.audit_summary(model, ZEN3_61)) == found
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_libvirt_guest_still_running_old_settings_is_restart_required(tmp_path):
    """The persistent XML got the PIT discard fix, the process still runs without it: the fleet
    report says restart_required from the running command line, and ready/inhibited otherwise."""
    from ansible_collections.vfio.avic.plugins.filter.avic_report import avic_fleet_report  # pylint: disable=import-outside-toplevel
    from conftest import write_host_tree
    running = fixture_argv('libvirt-hyperv.args')
    with open(os.path.join(FIXTURES, 'qemu', 'libvirt-hyperv.xml')) as handle:
        xml = handle.read()
    fixed = xml.replace("<clock offset='utc'/>",
                        "<clock offset='utc'><timer name='pit' tickpolicy='discard'/></clock>")
    assert fixed != xml
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', kernel='6.8.0-45-generic',
                           params={'avic': 'Y', 'npt': 'Y', 'nested': '0'}, guests={4242: running})
    facts = gather_facts.gather(root=root)
    assert facts['guests'][0]['source'] == 'libvirt' and facts['proxmox_guests'] is None
    for persistent, verdict in ((fixed, 'restart_required'), (xml, 'inhibited')):
        facts['domains'] = [{'name': 'QEMUGuest1', 'active': True, 'xml': persistent}]
        report = avic_fleet_report([{'inventory_hostname': 'h', 'vfio_avic': facts}])
        (guest,) = report['guests']['h']
        assert (guest['source'], guest['verdict']) == ('libvirt', verdict)
        assert 'pit_reinject' in guest['running_inhibits']
    assert 'pit_reinject' in guest['running_inhibits']
    assert report['rows'][0]['guests_restart'] == 0
