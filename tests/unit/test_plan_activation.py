# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Owned kernel arguments, the reboot decision, the final state and the reboot guard (plan/cmdline.py, plan/activation.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.plan import modprobe as modprobe_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import cmdline as cmdline_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import activation as activation_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError
from ansible_collections.vfio.avic.plugins.filter.__roles import HOST_ROLE_NAMES
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts

from conftest import write_host_tree


def facts_for(tmp_path, cpuinfo_name, kernel='6.1.0-26-amd64', params=None, files=None):
    return gather_facts.gather(root=write_host_tree(tmp_path, cpuinfo_name=cpuinfo_name, kernel=kernel,
                                                    params=params, files=files))


ARGS = ['amd_iommu=on', 'iommu=pt']


def test_owned_args_validate_and_dedupe():
    assert cmdline_plan.owned_args(['amd_iommu=on', 'iommu=pt'], 'vapic', ['iommu=nopt']) == \
        ['amd_iommu=on', 'amd_iommu_intr=vapic', 'iommu=nopt']
    with pytest.raises(PlanError, match='single'):
        cmdline_plan.owned_args(['quiet splash'])
    with pytest.raises(PlanError, match='^iommu_intr must be one of') as err:
        cmdline_plan.owned_args([], 'posted')
    assert err.value.render(HOST_ROLE_NAMES).startswith('avic_host_iommu_intr must be one of')


def test_seed_kernel_cmdline_drops_what_the_boot_loader_adds():
    seeded = cmdline_plan.seed_kernel_cmdline('BOOT_IMAGE=/vmlinuz-6.1 initrd=\\initrd.img root=UUID=ab rw quiet\n')
    assert seeded == 'root=UUID=ab rw quiet'
    with pytest.raises(PlanError, match='/etc/kernel/cmdline'):
        cmdline_plan.seed_kernel_cmdline('BOOT_IMAGE=/vmlinuz initrd=/initrd.img\n')


def test_final_state_active_pending_and_failed(tmp_path):
    opts = modprobe_plan.wanted_options()
    args = ['amd_iommu=on', 'iommu=pt']
    dirs = [tmp_path / n for n in 'abcd']
    for d in dirs:
        d.mkdir()
    cmd = {'/proc/cmdline': 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 amd_iommu=on iommu=pt\n'}
    active = facts_for(dirs[0], 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'},
                       files=cmd)
    assert activation_plan.final_state(active, opts, args)['state'] == 'active'
    # the running line already has the arguments: an edit of the configuration needs no reboot
    assert activation_plan.final_state(active, opts, args, next_boot='root=/dev/sda1 amd_iommu=on iommu=pt quiet'
                                       )['state'] == 'active'
    off = facts_for(dirs[1], 'zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '1'},
                    files=cmd)
    pending = activation_plan.final_state(off, opts, args)
    assert pending['state'] == 'pending_reload'
    assert 'kvm_amd avic: configured 1, running N' in pending['reasons']
    assert pending['running'] == {'avic': 'N', 'nested': '1', 'npt': 'Y'}
    assert activation_plan.final_state(off, opts, args, reloaded=True)['state'] == 'failed'
    nocmd = facts_for(dirs[2], 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    configured = activation_plan.final_state(nocmd, opts, args, next_boot='root=/dev/sda1 amd_iommu=on iommu=pt')
    assert configured['state'] == 'pending_reboot' and configured['reboot_needed'] is True
    unmanaged = activation_plan.final_state(nocmd, opts, args, next_boot=None)
    assert unmanaged['state'] == 'active' and unmanaged['reboot_needed'] is False
    assert 'no reboot' in unmanaged['reasons'][0]
    unloaded = facts_for(dirs[3], 'zen4_epyc_9654.txt', files=cmd)
    result = activation_plan.final_state(unloaded, opts, args)
    assert result['state'] == 'pending_reload' and 'not loaded' in result['reasons'][0]
    stopped = activation_plan.final_state(active, opts, args, preflight_result={
        'action': 'stop', 'state': 'failed', 'reasons': ['x'], 'warnings': []})
    assert stopped['state'] == 'failed' and stopped['reasons'] == ['x']


def test_cmdline_decision_reboots_only_when_the_next_boot_carries_the_args():
    running = 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet'
    go = cmdline_plan.cmdline_decision(running, 'root=/dev/sda1 quiet amd_iommu=on iommu=pt', ARGS)
    assert go['pending'] is True and go['missing'] == ARGS
    assert go['reason'] == 'the kernel command line takes effect at the next boot: amd_iommu=on iommu=pt'
    unmanaged = cmdline_plan.cmdline_decision(running, None, ARGS, target='none', names=HOST_ROLE_NAMES)
    assert unmanaged['pending'] is False and 'no reboot' in unmanaged['reason']
    assert 'avic_host_boot_config' in unmanaged['reason']
    assert cmdline_plan.cmdline_decision(running, None, ARGS, target='none')['reason'].endswith(
        'or set boot_config')
    overridden = cmdline_plan.cmdline_decision(running, 'console=ttyS0 amd_iommu=on', ARGS, target='grub')
    assert overridden['pending'] is False and 'iommu=pt' in overridden['reason']
    done = cmdline_plan.cmdline_decision(running + ' amd_iommu=on iommu=pt', 'x', ARGS)
    assert done == {'pending': False, 'missing': [], 'reason': None}
    removal = cmdline_plan.cmdline_decision('quiet amd_iommu_intr=legacy', 'quiet', [], ['amd_iommu_intr'])
    assert removal['pending'] is True and removal['missing'] == ['amd_iommu_intr=legacy']


def test_activation_reboots_for_options_only_when_the_next_load_takes_them(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    opts = modprobe_plan.wanted_options()
    cmd = 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 amd_iommu=on iommu=pt'
    off = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '0'},
                    files={'/proc/cmdline': cmd + '\n'})
    act = activation_plan.activation(off, opts, ARGS, next_boot=cmd)
    assert act['reload_needed'] and act['reboot'] and act['options_apply_at_boot']
    assert activation_plan.activation(off, opts, ARGS, next_boot=cmd, reloaded=True)['reboot'] is False
    blocked = activation_plan.activation(off, opts, ARGS, next_boot=cmd, winning_conflicts=[
        {'path': '/etc/modprobe.d/zz.conf', 'wins': True, 'message': '/etc/modprobe.d/zz.conf sets kvm_amd avic=0'}])
    assert blocked['reboot'] is False and 'no reboot' in blocked['reasons'][-1]
    forced = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '0'},
                       files={'/proc/cmdline': cmd + ' kvm_amd.avic=0\n'})
    result = activation_plan.final_state(forced, opts, ARGS, next_boot=cmd + ' kvm_amd.avic=0')
    assert result['reboot_needed'] is False
    assert any('kvm_amd.avic=0' in r and 'overrides the managed avic=1' in r for r in result['reasons'])


def test_cmdline_option_conflicts_compare_values_not_spelling():
    opts = modprobe_plan.wanted_options()
    assert cmdline_plan.cmdline_option_conflicts(opts, 'kvm_amd.avic=Y kvm-amd.npt=1') == []
    found = cmdline_plan.cmdline_option_conflicts(opts, 'quiet', 'kvm-amd.nested=1')
    assert len(found) == 1 and "next boot's kernel command line sets kvm_amd.nested=1" in found[0]


def test_next_boot_line_prefers_the_module_result():
    facts = {'boot_cmdline': {'target': 'grub', 'value': 'quiet'}}
    assert cmdline_plan.next_boot_line(facts) == 'quiet'
    assert cmdline_plan.next_boot_line(facts, 'grub', 'quiet iommu=pt') == 'quiet iommu=pt'
    assert cmdline_plan.next_boot_line({'boot_cmdline': {'target': 'none', 'value': None}}) is None
    assert cmdline_plan.next_boot_line(facts, 'none', None) is None


def test_reboot_guard():
    qemu = [{'pid': 41, 'name': 'win11', 'kvm': True}, {'pid': 42, 'name': None, 'kvm': True}]
    assert activation_plan.reboot_guard([], []) == {'action': 'proceed', 'shutdown': [], 'guests': [], 'reason': None}
    skip = activation_plan.reboot_guard(qemu, ['win11'])
    assert skip['action'] == 'skip' and skip['guests'] == ['pid 42 (no name)', 'win11']
    assert 'unnamed' not in skip['reason']
    stray = activation_plan.reboot_guard(qemu, ['win11'], shutdown=True)
    assert stray['action'] == 'skip' and stray['shutdown'] == [] and 'pid 42 (no name)' in stray['reason']
    go = activation_plan.reboot_guard(qemu[:1], ['win11', 'db'], shutdown=True)
    assert go == {'action': 'shutdown', 'shutdown': ['db', 'win11'], 'guests': ['db', 'win11'], 'reason': None}
    check = activation_plan.reboot_guard(qemu[:1], ['win11'], shutdown=True, check_mode=True)
    assert check['action'] == 'report' and 'would be shut down' in check['reason']
    assert activation_plan.reboot_guard([], [], check_mode=True)['action'] == 'report'
    assert activation_plan.reboot_guard(qemu, None, container='podman')['action'] == 'report'
    nolibvirt = activation_plan.reboot_guard(qemu[:1], None, shutdown=True)
    assert nolibvirt['action'] == 'shutdown' and nolibvirt['shutdown'] == ['win11']


def test_reboot_guard_names_the_callers_shutdown_option():
    qemu = [{'pid': 41, 'name': 'win11', 'kvm': True}]
    plain = activation_plan.reboot_guard(qemu, ['win11'])
    assert plain['reason'].endswith('set shutdown_guests: true to shut them down first')
    named = activation_plan.reboot_guard(qemu, ['win11'],
                                         option_names={'shutdown_guests': 'avic_kernel_shutdown_guests'})
    assert 'set avic_kernel_shutdown_guests: true' in named['reason']
    assert 'role' not in named['reason']
