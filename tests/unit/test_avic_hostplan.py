# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import avic_gather, avic_hostplan as plan

from conftest import write_host_tree


def facts_for(tmp_path, cpuinfo_name, kernel='6.1.0-26-amd64', params=None, files=None):
    return avic_gather.gather(root=write_host_tree(tmp_path, cpuinfo_name=cpuinfo_name, kernel=kernel,
                                                   params=params, files=files))


# --- preflight ---

def test_preflight_configures_a_zen2_epyc(tmp_path):
    result = plan.preflight(facts_for(tmp_path, 'zen2_epyc_7702.txt'))
    assert result == {'action': 'configure', 'state': None, 'reasons': [], 'warnings': []}


def test_preflight_stops_on_hidden_avic_unless_forced(tmp_path):
    facts = facts_for(tmp_path, 'zen3_ryzen_5950x.txt')
    stop = plan.preflight(facts)
    assert stop['action'] == 'stop' and stop['state'] == 'failed'
    assert 'force_avic=1' in stop['reasons'][0] and 'avic_host_force_avic: true' in stop['reasons'][0]
    go = plan.preflight(facts, force_avic=True)
    assert go['action'] == 'configure' and 'taint' in go['warnings'][0]


def test_preflight_stops_without_svm_and_reports_intel(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    nosvm = plan.preflight(facts_for(tmp_path / 'a', 'amd_vm_epyc_nosvm.txt'))
    assert nosvm['action'] == 'stop' and 'firmware' in nosvm['reasons'][0]
    assert 'avic_host_allow_no_svm' in nosvm['reasons'][0]
    intel = plan.preflight(facts_for(tmp_path / 'b', 'intel_xeon_gold_6338.txt',
                                     files={'/sys/module/kvm_intel/parameters/enable_apicv': 'Y\n'}))
    assert intel['action'] == 'report' and intel['state'] == 'unsupported'
    assert intel['reasons'] == ['Intel CPU: AVIC is AMD-only; kvm_intel APICv is on.']


def test_preflight_kernel_rules_and_overrides(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    old = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', kernel='4.4.0-210-generic')
    stop = plan.preflight(old)
    assert stop['action'] == 'stop' and 'avic_host_allow_old_kernel' in stop['reasons'][0]
    assert plan.preflight(old, allow_old_kernel=True)['action'] == 'configure'
    known = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', kernel='5.4.30')
    warned = plan.preflight(known)
    assert warned['action'] == 'configure' and warned['warnings']
    refused = plan.preflight(known, refuse_known_issues=True)
    assert refused['action'] == 'stop' and 'avic_host_refuse_known_issues' in refused['reasons'][0]


# --- options and modprobe.d ---

def test_wanted_options_defaults_force_nested_and_extra():
    assert plan.wanted_options() == [('avic', '1'), ('npt', '1'), ('nested', '0')]
    assert plan.wanted_options(True, True) == [('avic', '1'), ('npt', '1'), ('nested', '1'),
                                               ('force_avic', '1')]
    extra = plan.wanted_options(extra={'avic-ipi': False, 'nested': 1})
    assert extra[-2:] == [('avic_ipi', '0'), ('nested', '1')]
    with pytest.raises(plan.PlanError, match='avic_host_extra_options'):
        plan.wanted_options(extra={'bad name': 1})
    with pytest.raises(plan.PlanError, match='no spaces or quotes'):
        plan.wanted_options(extra={'x': 'a b'})


def test_modprobe_text_has_a_header_and_one_options_line():
    text = plan.modprobe_text(plan.wanted_options())
    assert text.startswith('# Managed by Ansible (vfio.avic.host)')
    assert text.splitlines()[-1] == 'options kvm_amd avic=1 npt=1 nested=0'


def test_conflicts_know_who_wins():
    files = [('/etc/modprobe.d/kvm.conf', 'options kvm-amd nested=1 avic=1\n'),
             ('/etc/modprobe.d/vfio-avic-kvm_amd.conf', plan.modprobe_text(plan.wanted_options())),
             ('/etc/modprobe.d/zz-local.conf', 'options kvm_amd avic=0 npt=1\nblacklist kvm_amd\n')]
    found = plan.conflicts(files, '/etc/modprobe.d/vfio-avic-kvm_amd.conf', plan.wanted_options())
    by = dict(((c['path'], c['option']), c) for c in found)
    assert by[('/etc/modprobe.d/kvm.conf', 'nested')]['wins'] is False
    assert by[('/etc/modprobe.d/zz-local.conf', 'avic')]['wins'] is True
    assert by[('/etc/modprobe.d/zz-local.conf', None)]['message'].endswith('blacklists kvm_amd')
    assert ('/etc/modprobe.d/kvm.conf', 'avic') not in by and ('/etc/modprobe.d/zz-local.conf', 'npt') not in by


def test_comment_conflicts_keeps_unrelated_options_and_lines():
    text = '# mine\noptions kvm_amd nested=1 sev=0\noptions kvm_intel nested=1\n'
    out = plan.comment_conflicts(text, {'nested'})
    assert out == ('# mine\n# options kvm_amd nested=1 sev=0  # disabled by vfio.avic.host\n'
                   'options kvm_amd sev=0\noptions kvm_intel nested=1\n')
    assert plan.comment_conflicts(out, {'nested'}) == out


# --- kernel command line ---

def test_owned_args_validate_and_dedupe():
    assert plan.owned_args(['amd_iommu=on', 'iommu=pt'], 'vapic', ['iommu=nopt']) == \
        ['amd_iommu=on', 'amd_iommu_intr=vapic', 'iommu=nopt']
    with pytest.raises(plan.PlanError, match='single'):
        plan.owned_args(['quiet splash'])
    with pytest.raises(plan.PlanError, match='avic_host_iommu_intr'):
        plan.owned_args([], 'posted')


def test_edit_cmdline_keeps_the_users_arguments():
    line = 'quiet amd_iommu=off splash iommu=pt mitigations=off amd_iommu=off'
    assert plan.edit_cmdline(line, ['amd_iommu=on', 'iommu=pt']) == \
        'quiet amd_iommu=on splash iommu=pt mitigations=off'
    assert plan.edit_cmdline('', ['amd_iommu=on']) == 'amd_iommu=on'
    assert plan.edit_cmdline('quiet amd_iommu_intr=legacy', [], ['amd_iommu_intr']) == 'quiet'


GRUB = '''# If you change this file, run 'update-grub' afterwards
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80"
GRUB_CMDLINE_LINUX=""
'''


def test_edit_grub_default_touches_only_its_arguments():
    out = plan.edit_grub_default(GRUB, ['amd_iommu=on', 'iommu=pt'])
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt"\n' in out
    assert out.replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt"',
                       'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80"') == GRUB
    assert plan.edit_grub_default(out, ['amd_iommu=on', 'iommu=pt']) == out, 'idempotent'
    assert plan.grub_value(out) == 'quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt'


def test_edit_grub_default_single_quotes_export_and_missing_line():
    text = "export GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n"
    assert plan.edit_grub_default(text, ['iommu=pt']) == 'export GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
    assert plan.edit_grub_default('GRUB_TIMEOUT=5', ['iommu=pt']) == \
        'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'
    with pytest.raises(plan.PlanError, match='quoting'):
        plan.edit_grub_default('GRUB_CMDLINE_LINUX_DEFAULT="quiet\n', ['iommu=pt'])


# --- final state ---

def test_final_state_active_pending_and_failed(tmp_path):
    opts = plan.wanted_options()
    args = ['amd_iommu=on', 'iommu=pt']
    dirs = [tmp_path / n for n in 'abcd']
    for d in dirs:
        d.mkdir()
    cmd = {'/proc/cmdline': 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 amd_iommu=on iommu=pt\n'}
    active = facts_for(dirs[0], 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'},
                       files=cmd)
    assert plan.final_state(active, opts, args)['state'] == 'active'
    assert plan.final_state(active, opts, args, cmdline_changed=True)['state'] == 'pending_reboot'
    off = facts_for(dirs[1], 'zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '1'},
                    files=cmd)
    pending = plan.final_state(off, opts, args)
    assert pending['state'] == 'pending_reload'
    assert 'kvm_amd avic: configured 1, running N' in pending['reasons']
    assert pending['running'] == {'avic': 'N', 'nested': '1', 'npt': 'Y'}
    assert plan.final_state(off, opts, args, reloaded=True)['state'] == 'failed'
    nocmd = facts_for(dirs[2], 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    assert plan.final_state(nocmd, opts, args)['state'] == 'pending_reboot'
    unloaded = facts_for(dirs[3], 'zen4_epyc_9654.txt', files=cmd)
    result = plan.final_state(unloaded, opts, args)
    assert result['state'] == 'pending_reload' and 'not loaded' in result['reasons'][0]
    stopped = plan.final_state(active, opts, args, preflight_result={
        'action': 'stop', 'state': 'failed', 'reasons': ['x'], 'warnings': []})
    assert stopped['state'] == 'failed' and stopped['reasons'] == ['x']


def test_cmdline_target_and_needs_change():
    def exists_of(*paths):
        return lambda p: p in paths
    assert plan.cmdline_target(exists_of('/etc/default/grub')) == 'grub'
    assert plan.cmdline_target(exists_of('/etc/default/grub', '/etc/kernel/proxmox-boot-uuids')) == 'kernel_cmdline'
    assert plan.cmdline_target(exists_of('/boot/loader/loader.conf')) == 'kernel_cmdline'
    assert plan.cmdline_target(exists_of(), has_grubby=True) == 'grubby'
    assert plan.cmdline_target(exists_of()) == 'none'
    assert plan.cmdline_needs_change('quiet amd_iommu=on iommu=pt', ['amd_iommu=on', 'iommu=pt']) is False
    assert plan.cmdline_needs_change('quiet amd_iommu=off', ['amd_iommu=on']) is True
    assert plan.cmdline_needs_change('amd_iommu=on amd_iommu=on', ['amd_iommu=on']) is True
    assert plan.cmdline_needs_change('quiet amd_iommu_intr=legacy', [], ['amd_iommu_intr']) is True
    assert plan.cmdline_needs_change(None, ['iommu=pt']) is None


def test_facts_carry_the_configured_command_line_and_kernel_packages(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    dpkg = ('Package: linux-image-6.1.0-26-amd64\nStatus: hold ok installed\nVersion: 6.1.112-1\n\n'
            'Package: linux-image-amd64\nStatus: install ok installed\nVersion: 6.1.112-1\n\n'
            'Package: linux-image-6.1.0-9-amd64\nStatus: deinstall ok config-files\n\n'
            'Package: bash\nStatus: install ok installed\n')
    facts = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', files={
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n', '/var/lib/dpkg/status': dpkg})
    assert facts['boot_cmdline'] == {'target': 'grub', 'value': 'quiet iommu=pt'}
    assert facts['kernel_packages'] == [
        {'package': 'linux-image-6.1.0-26-amd64', 'release': '6.1.0-26-amd64', 'held': True, 'version': '6.1.112-1'},
        {'package': 'linux-image-amd64', 'release': None, 'held': False, 'version': '6.1.112-1'}]
    other = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', files={'/etc/kernel/cmdline': 'root=ZFS=x  boot=zfs\n'})
    assert other['boot_cmdline'] == {'target': 'kernel_cmdline', 'value': 'root=ZFS=x boot=zfs'}
    assert other['kernel_packages'] is None
