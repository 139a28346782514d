# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Proxmox VE guest audit: qemu-server's own configurations and the command lines it builds
for them (tests/fixtures/proxmox/README.md), then avic_facts and the fleet report on a Proxmox
host tree."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import shlex

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.filter.avic_qemu import proxmox_avic_issues
from ansible_collections.vfio.avic.plugins.filter.avic_report import avic_fleet_report
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox as proxmox_guest
from ansible_collections.vfio.avic.plugins.module_utils.guests import qemu as qemu_guest
from ansible_collections.vfio.avic.plugins.plugin_utils import report as reporting
from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox_fix

from conftest import REPO, write_host_tree

FIXTURES = os.path.join(REPO, 'tests', 'fixtures', 'proxmox')
ZEN3_61 = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False}
ZEN4_68 = {'kernel': '6.8.0-45-generic', 'avic': True, 'x2avic': True}
OLD_54 = {'kernel': '5.4.0-42-generic', 'avic': True, 'x2avic': False, 'nested': True}
# qemu-server's test suite runs as QEMU 11.0 (its expected command lines carry the cet-* flags
# that get_pve_cpu_flags adds from QEMU 11.0 on)
QEMU_11 = dict(ZEN4_68, qemu='11.0.0')


def read(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


MODELS = read('cpu-models.conf')
PAIRS = sorted(os.path.basename(p)[:-len('.cmd')] for p in glob.glob(os.path.join(FIXTURES, '*.conf.cmd')))


def ids(findings):
    return [f['id'] for f in findings]


def test_the_corpus_is_there():
    assert len(PAIRS) >= 13 and 'win11-amd-host-11.0+pve2.conf' in PAIRS


@pytest.mark.parametrize('name', PAIRS)
def test_config_gives_the_model_of_the_command_line_qemu_server_builds(name):
    """qemu-server's expected command line (<name>.conf.cmd) and our reading of <name>.conf are
    the same guest model, so they get the same findings on every host."""
    argv = shlex.split(read(name + '.cmd'))
    built = proxmox_guest.proxmox_summary(read(name), 8006, MODELS, qemu=(11, 0))
    assert built == qemu_guest.qemu_summary(argv)
    for host in (ZEN3_61, ZEN4_68, OLD_54):
        host = dict(host, qemu='11.0')
        assert ids(proxmox_guest.audit_proxmox(read(name), host, 8006, MODELS)) == \
            ids(qemu_guest.audit_qemu(argv, host)), host['kernel']


# config -> ids on ZEN4_68 (kernel 6.8, x2AVIC)
EXPECTED = {
    # no ostype: kvm64, and the PIT keeps reinjecting (only Windows gets the discard global)
    'minimal-defaults.conf': ['cpu_mode_not_host', 'pit_reinject'],
    'simple1.conf': ['cpu_mode_not_host', 'pit_reinject'],
    # Windows 11 with cpu: host: svm from the host model, SynIC/stimer without hv-avic, vapic, ipi
    'win11-amd-host-11.0+pve2.conf': ['svm_exposed', 'hyperv_synic', 'hyperv_stimer', 'hyperv_vapic',
                                      'hyperv_tlbflush_ipi', 'invtsc_missing'],
    'q35-win10-hostpci.conf': ['cpu_mode_not_host', 'hyperv_synic', 'hyperv_stimer', 'hyperv_vapic',
                               'hyperv_tlbflush_ipi', 'invtsc_missing'],
    # split irqchip from viommu=intel: no in-kernel PIT
    'q35-viommu-intel.conf': ['cpu_mode_not_host'],
    'sev-snp.conf': ['cpu_mode_not_host', 'pit_reinject', 'sev_guest'],
}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_findings_of_proxmox_defaults(name):
    assert ids(proxmox_guest.audit_proxmox(read(name), ZEN4_68, 8006, MODELS)) == EXPECTED[name]


def test_what_qemu_server_applies():
    win = proxmox_guest.proxmox_summary(read('win11-amd-host-11.0+pve2.conf'))
    assert win['hyperv'] == {'mode': 'custom', 'ipi': True, 'relaxed': True, 'reset': True,
                             'runtime': True, 'spinlocks': True, 'stimer': True, 'synic': True,
                             'vapic': True, 'vpindex': True}
    assert win['timers']['pit'] == {'name': 'pit', 'tickpolicy': 'discard'}
    assert win['timers']['hypervclock']['present'] == 'yes'
    solaris = proxmox_guest.proxmox_summary(read('os-solaris.conf'))
    assert solaris['cpu_features']['x2apic'] == 'disable'
    assert proxmox_guest.proxmox_summary(read('sev-es.conf'))['sev'] == {'type': 'sev', 'policy': 0xc}
    hostpci = proxmox_guest.proxmox_summary(read('q35-win10-hostpci.conf'))
    assert (hostpci['vcpus'], hostpci['topology']['sockets']) == (2, 2)
    custom = proxmox_guest.proxmox_summary(read('custom-cpu-model.conf'), cpu_models=MODELS)
    assert custom['cpu_features']['kvm-pv-unhalt'] == 'disable'  # the model's -kvm_pv_unhalt wins


# Configurations written for these tests (stand-ins, not from a public source): the keys and
# values are the documented ones of qm.conf.
LINUX_WITH_SNAPSHOT = """# description line
boot: order=scsi0
cores: 4
cpu: host,flags=+nested-virt
name: lin
ostype: l26
args: -global kvm-pit.lost_tick_policy=discard -cpu host,-x2apic,-svm

[before-fix]
cores: 64
ostype: win11
args: -smp 600
"""


def test_snapshot_sections_are_ignored_and_args_come_last():
    conf = proxmox_guest.parse_conf(LINUX_WITH_SNAPSHOT)
    assert conf['cores'] == '4' and conf['ostype'] == 'l26'
    argv = proxmox_guest.proxmox_argv(conf, 101)
    assert argv[-4:] == ['-global', 'kvm-pit.lost_tick_policy=discard', '-cpu', 'host,-x2apic,-svm']
    assert ids(proxmox_guest.audit_proxmox(LINUX_WITH_SNAPSHOT, ZEN3_61, 101)) == []
    without_args = LINUX_WITH_SNAPSHOT.replace('args: -global', '#')
    model = proxmox_guest.proxmox_summary(without_args)
    assert model['cpu_features']['svm'] == 'require'  # nested-virt is svm on an AMD host
    assert ids(proxmox_guest.audit_proxmox(without_args, ZEN3_61)) == [
        'x2apic_exposed', 'svm_exposed', 'pit_reinject']


def test_tcg_cpu_hotplug_and_windows_without_machine_version():
    tcg = proxmox_guest.proxmox_summary('kvm: 0\nostype: l26\n')
    assert tcg['type'] == 'qemu' and tcg['cpu_mode'] == 'custom'
    hotplug = proxmox_guest.proxmox_summary('hotplug: disk,network,cpu\nsockets: 1\ncores: 8\nvcpus: 3\n')
    assert (hotplug['vcpus'], hotplug['max_apic_id']) == (3, 7)
    argv = proxmox_guest.proxmox_argv('ostype: win10\nmachine: q35\n')
    assert 'type=pc-q35-5.1' in argv[argv.index('-machine') + 1]
    argv = proxmox_guest.proxmox_argv('ostype: win10\nmeta: creation-qemu=9.2.0,ctime=1\n')
    assert 'type=pc-i440fx-9.2' in argv[argv.index('-machine') + 1]
    ovmf_win7 = proxmox_guest.proxmox_summary('ostype: win7\nbios: ovmf\n')
    assert ovmf_win7['hyperv'] is None  # get_hyperv_enlightenments: none with OVMF before Windows 8


def test_bad_configurations_name_the_problem():
    for text, what in (('', 'qm_conf_text'), ('not a conf', 'line 1'),
                       ('cpu: custom-mine\n', 'cpu_models'), ('cores: many\n', 'cores'),
                       ('amd-sev: type=xx\n', 'amd-sev')):
        with pytest.raises(proxmox_guest.ProxmoxConfigError, match=what):
            proxmox_guest.audit_proxmox(text, ZEN4_68)
    with pytest.raises(AnsibleFilterError, match='proxmox_avic_issues.*cpu_models'):
        proxmox_avic_issues('cpu: custom-mine\n', ZEN4_68)
    assert ids(proxmox_avic_issues('cpu: custom-qemu64\nostype: l26\n', ZEN4_68, 100, MODELS)) == [
        'cpu_mode_not_host', 'pit_reinject']


def _proxmox_host(tmp_path, running_args):
    """A Proxmox VE host tree: VM 100 runs with ``running_args`` (its configuration has since been
    fixed), VM 101 is defined and stopped, and a plain QEMU script runs beside them."""
    conf_100 = 'name: win\nostype: win11\ncpu: host\nmachine: pc-q35-9.2+pve1\n' \
               'args: -cpu host,-x2apic,-svm,+invtsc,hv_time,hv_relaxed,hv_vpindex\n'
    files = {'/etc/pve/qemu-server/100.conf': conf_100,
             '/etc/pve/qemu-server/101.conf': read('minimal-defaults.conf'),
             '/etc/os-release': 'ID=debian\nVERSION_ID="12"\n'}
    running = shlex.split(read('win11-amd-host-11.0+pve2.conf.cmd').replace('8006', '100'))
    script = ['qemu-system-x86_64', '-enable-kvm', '-cpu', 'host,-x2apic,-svm',
              '-global', 'kvm-pit.lost_tick_policy=discard', '-name', 'script-vm']
    return write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', kernel='6.8.0-45-generic',
                           params={'avic': 'Y', 'npt': 'Y', 'nested': '0'}, files=files,
                           guests={4242: running + running_args, 4343: script})


def test_avic_facts_and_the_fleet_report_show_every_guest_with_its_source(tmp_path):
    facts = gather_facts.gather(root=_proxmox_host(tmp_path, []))
    by_pid = dict((g['pid'], g) for g in facts['guests'])
    assert (by_pid[4242]['source'], by_pid[4242]['vmid'], by_pid[4242]['kvm']) == ('proxmox', 100, True)
    assert 'hyperv_synic' in ids(by_pid[4242]['findings'])
    assert (by_pid[4343]['source'], by_pid[4343]['name'], ids(by_pid[4343]['findings'])) == (
        'qemu', 'script-vm', [])
    pve = dict((g['vmid'], g) for g in facts['proxmox_guests'])
    assert (pve[100]['running'], pve[101]['running']) == (True, False)
    assert 'hyperv_synic' not in ids(pve[100]['findings'])  # the fixed configuration
    assert '_summary' not in pve[100] and '_summary' not in by_pid[4242]

    report = avic_fleet_report([{'inventory_hostname': 'pve', 'vfio_avic': facts}])
    guests = dict((g['name'], g) for g in report['guests']['pve'])
    assert guests['win']['source'] == 'proxmox' and guests['win']['verdict'] == 'restart_required'
    assert 'hyperv_synic' in guests['win']['reasons'][0]
    assert (guests['vm101']['source'], guests['vm101']['active'], guests['vm101']['verdict']) == (
        'proxmox', False, 'inhibited')
    assert (guests['script-vm']['source'], guests['script-vm']['verdict']) == ('qemu', 'ready')
    row = report['rows'][0]
    assert (row['guests_total'], row['guests_restart'], row['guests_ready']) == (3, 1, 1)
    text = '\n'.join(reporting.fleet_markdown(report['rows'], report['guests']))
    assert '| pve | win (proxmox) | running | restart required |' in text
    lines = reporting.host_report_lines(row, facts, report['guests']['pve'])
    assert '  guest script-vm (qemu, running): ready' in lines


def test_a_restarted_guest_is_no_longer_restart_required(tmp_path):
    # the running command line now carries the fixed args: nothing is stale
    fixed = ['-cpu', 'host,-x2apic,-svm,+invtsc,hv_time,hv_relaxed,hv_vpindex']
    facts = gather_facts.gather(root=_proxmox_host(tmp_path, fixed))
    report = avic_fleet_report([{'inventory_hostname': 'pve', 'vfio_avic': facts}])
    guests = dict((g['name'], g) for g in report['guests']['pve'])
    assert guests['win']['verdict'] == 'ready' and guests['win']['running_inhibits'] == []


@pytest.mark.parametrize('name, fixes, remaining', [
    # no ostype: PIT through args, x2apic through a custom model derived from kvm64
    ('minimal-defaults.conf', ['x2apic_exposed', 'pit_reinject'], ['cpu_mode_not_host']),
    # Windows 11 on cpu: host: -x2apic and +hv-avic in a model reporting host (svm is info on
    # 6.1, so it stays for the guest's own VMs)
    ('win11-amd-host-11.0+pve2.conf', ['x2apic_exposed', 'hyperv_synic', 'hyperv_stimer'],
     ['invtsc_missing']),
])
def test_fix_plan_goes_through_qm_set_and_a_custom_model(name, fixes, remaining):
    plan = proxmox_fix.fix_plan(read(name), dict(ZEN3_61, qemu='9.2'), 8006)
    assert plan['fixes'] == fixes and plan['remaining'] == remaining
    model = plan['cpu_model']
    assert plan['qm_set'][:2] == ['--cpu', 'custom-%s' % model['name']]
    # the model section reads back as Proxmox writes cpu-models.conf, and the planned
    # configuration with it no longer has the fixed findings
    parsed = proxmox_guest.parse_cpu_models(model['text'])
    after = proxmox_guest.audit_proxmox(plan['conf'], dict(ZEN3_61, qemu='9.2'), 8006, model['text'])
    assert not set(fixes) & set(ids(after)) and '-x2apic' in parsed[model['name']]['flags'].split(';')


def test_fix_plan_keeps_the_users_args_and_changes_nothing_on_a_clean_guest():
    plan = proxmox_fix.fix_plan('ostype: l26\ncpu: host\nargs: -no-reboot\n', ZEN4_68, 101)
    assert plan['qm_set'][-2:] == ['--args', '-no-reboot -global kvm-pit.lost_tick_policy=discard']
    clean = 'ostype: l26\ncpu: host\nargs: -cpu host,-svm -global kvm-pit.lost_tick_policy=discard\n'
    assert proxmox_fix.fix_plan(clean, ZEN4_68, 102)['qm_set'] == []


# qemu-server's configurations -> the exact qm set arguments and cpu-models.conf section on a
# Zen 3 host with kernel 6.1 (no x2AVIC) and QEMU 9.2: x2apic off, SynIC/stimer kept with hv-avic
KVM64_X2APIC = 'cpu-model: avic-kvm64-6a45a0\n    flags -x2apic\n    reported-model kvm64\n\n'
KVM64_WINDOWS = 'cpu-model: avic-kvm64-2bc0ba\n    flags -x2apic;+hv-avic\n    reported-model kvm64\n\n'
HOST_WINDOWS = 'cpu-model: avic-host-fb761c\n    flags -x2apic;+hv-avic\n    reported-model host\n\n'
PIT = ['--args', '-global kvm-pit.lost_tick_policy=discard']
PLANS = {
    'minimal-defaults.conf': (['--cpu', 'custom-avic-kvm64-6a45a0'] + PIT, KVM64_X2APIC),
    'simple1.conf': (['--cpu', 'custom-avic-kvm64-6a45a0'] + PIT, KVM64_X2APIC),
    # Windows gets the PIT global from qemu-server already
    'win11-amd-host-11.0+pve2.conf': (['--cpu', 'custom-avic-host-fb761c'], HOST_WINDOWS),
    'q35-win10-hostpci.conf': (['--cpu', 'custom-avic-kvm64-2bc0ba'], KVM64_WINDOWS),
    # the VM's own level and flags stay on its cpu option
    'cpu-level.conf': (['--cpu', 'custom-avic-host-fb761c,level=30,flags=+md-clear;+pdpe1gb;-hv-tlbflush'],
                       HOST_WINDOWS),
    # a model derived from the user's custom model keeps its reported model and properties
    'custom-cpu-model.conf': (['--cpu', 'custom-avic-qemu64-483a37,flags=+virt-ssbd'],
                              'cpu-model: avic-qemu64-483a37\n    flags +aes;+avx;-kvm_pv_unhalt;-x2apic;+hv-avic\n'
                              '    hv-vendor-id testvend\n    phys-bits 40\n    reported-model athlon\n\n'),
    # qemu-server already turns x2apic off for Solaris: only the PIT
    'os-solaris.conf': (PIT, None),
    # split irqchip (viommu=intel): no in-kernel PIT to fix
    'q35-viommu-intel.conf': (['--cpu', 'custom-avic-kvm64-6a45a0'], KVM64_X2APIC),
    'sev-snp.conf': (['--cpu', 'custom-avic-kvm64-6a45a0'] + PIT, KVM64_X2APIC),
}


def test_every_configuration_of_the_corpus_has_a_plan():
    assert sorted(PLANS) == sorted(set(PLANS) & set(PAIRS)) and len(PLANS) >= 9


@pytest.mark.parametrize('name', sorted(PLANS))
def test_exact_qm_set_and_cpu_model_of_the_corpus(name):
    qm_set, model_text = PLANS[name]
    host = dict(ZEN3_61, qemu='9.2')
    plan = proxmox_fix.fix_plan(read(name), host, 8006, MODELS)
    assert plan['qm_set'] == qm_set
    assert (plan['cpu_model'] or {}).get('text') == model_text
    models = proxmox_fix.merge_cpu_model(MODELS, plan['cpu_model']['name'], model_text) if model_text else MODELS
    # the fixed configuration (as qm set leaves it) has none of the fixed findings, and a second
    # plan on it changes nothing
    after = ids(proxmox_guest.audit_proxmox(plan['conf'], host, 8006, models))
    assert not set(plan['fixes']) & set(after)
    assert proxmox_fix.fix_plan(plan['conf'], host, 8006, models)['qm_set'] == []


def test_per_host_decisions_for_windows():
    win = read('win11-amd-host-11.0+pve2.conf')
    # x2AVIC host (Zen 4, 6.8): x2apic kept, hv-avic only
    plan = proxmox_fix.fix_plan(win, dict(ZEN4_68, qemu='9.2'), 100)
    assert plan['cpu_model']['text'].split('\n')[1] == '    flags +hv-avic'
    # kernel 5.4 with nested=1: svm inhibits and SynIC inhibits whatever hv-avic says
    plan = proxmox_fix.fix_plan(win, dict(OLD_54, qemu='9.2'), 100)
    assert plan['cpu_model']['text'].split('\n')[1] == '    flags -svm;-hv-synic;-hv-stimer'
    assert 'older than 5.15' in plan['notes'][0] and 'hyperv_synic' in plan['fixes']
    # QEMU 6.1 has no hv-avic: SynIC and stimer off; hyperv: avic refused, keep leaves them
    plan = proxmox_fix.fix_plan(win, dict(ZEN4_68, qemu='6.1'), 100)
    assert plan['cpu_model']['text'].split('\n')[1] == '    flags -hv-synic;-hv-stimer'
    with pytest.raises(proxmox_guest.ProxmoxConfigError, match='hyperv: avic needs QEMU 6.2'):
        proxmox_fix.fix_plan(win, dict(ZEN4_68, qemu='6.1'), 100, hyperv='avic')
    with pytest.raises(proxmox_guest.ProxmoxConfigError, match='before 5.15'):
        proxmox_fix.fix_plan(win, dict(OLD_54, qemu='9.2'), 100, hyperv='avic')
    assert proxmox_fix.fix_plan(win, dict(ZEN4_68, qemu='6.1'), 100, hyperv='keep')['qm_set'] == []
    with pytest.raises(proxmox_guest.ProxmoxConfigError, match='hyperv must be one of'):
        proxmox_fix.fix_plan(win, ZEN4_68, 100, hyperv='on')


def test_merge_cpu_model_keeps_every_model():
    section = 'cpu-model: avic-kvm64-6a45a0\n    flags -x2apic\n    reported-model kvm64\n\n'
    merged = proxmox_fix.merge_cpu_model(MODELS, 'avic-kvm64-6a45a0', section)
    assert merged.startswith(MODELS) and merged.endswith(section)
    assert sorted(proxmox_guest.parse_cpu_models(merged)) == ['alldefault', 'avic-kvm64-6a45a0', 'qemu64']
    assert proxmox_fix.merge_cpu_model(merged, 'avic-kvm64-6a45a0', section) == merged
    assert proxmox_fix.merge_cpu_model(None, 'avic-kvm64-6a45a0', section) == section
    with pytest.raises(proxmox_guest.ProxmoxConfigError, match='already has a different cpu-model'):
        proxmox_fix.merge_cpu_model(merged.replace('    flags -x2apic\n    reported-model kvm64',
                                                   '    reported-model EPYC'), 'avic-kvm64-6a45a0', section)
