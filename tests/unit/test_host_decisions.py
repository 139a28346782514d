# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions avic_modprobe and avic_cmdline return (reload_required, reboot_required), run
the way Ansible runs them on host trees written as sysfs and /proc lay them out, and what the
host role's filters make of them."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.plan import activation as activation_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import modprobe as modprobe_plan

from conftest import run_ansible_module, write_host_tree

ARGS = ['amd_iommu=on', 'iommu=pt']
GRUB = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet%s"\n'


def module(name, root, *flags, **args):
    args['root'] = str(root)
    status, result = run_ansible_module('vfio.avic.%s' % name, json.dumps(args), *flags)
    assert 'FAILED' not in status, result
    return result


@pytest.mark.parametrize('params, required, differs', [
    ({'avic': 'N', 'npt': 'Y', 'nested': '0'}, True, {'avic': {'configured': '1', 'running': 'N'}}),
    ({'avic': 'Y', 'npt': 'Y', 'nested': '0'}, False, {}),
    ({'avic': '1', 'npt': '1', 'nested': 'N', 'enable_ipiv': 'Y'}, False, {}),
    (None, True, {}),
], ids=['avic-off', 'active', 'same-values-other-spelling', 'not-loaded'])
def test_modprobe_says_whether_the_running_module_must_be_reloaded(tmp_path, params, required, differs):
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', params=params)
    result = module('avic_modprobe', root, '--check')
    assert result['reload_required'] is required
    assert result['reload_differs'] == differs
    assert result['loaded'] is (params is not None)
    # the same decision the facts lead to (one owner: plan/activation.reload_plan)
    facts = gather_facts.gather(root=root)
    assert activation_plan.reload_plan(facts['kvm_amd'], sorted(result['options'].items()))['required'] is required


def test_modprobe_reload_follows_the_options_written(tmp_path):
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt',
                           params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    result = module('avic_modprobe', root, '--check', nested=True)
    assert result['reload_required'] is True
    assert result['reload_differs'] == {'nested': {'configured': '1', 'running': '0'}}


def test_cmdline_says_whether_a_reboot_applies_the_arguments(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    (tmp_path / 'c').mkdir()
    lacking = write_host_tree(tmp_path / 'a', cpuinfo_name='zen4_epyc_9654.txt',
                              files={'/etc/default/grub': GRUB % ''})
    result = module('avic_cmdline', lacking, '--check', args=ARGS)
    assert result['changed'] is True and result['reboot_required'] is True
    assert result['reboot_reason'] == 'the kernel command line takes effect at the next boot: amd_iommu=on iommu=pt'
    booted = write_host_tree(tmp_path / 'b', cpuinfo_name='zen4_epyc_9654.txt',
                             cmdline='BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet amd_iommu=on iommu=pt',
                             files={'/etc/default/grub': GRUB % ' amd_iommu=on iommu=pt'})
    result = module('avic_cmdline', booted, args=ARGS)
    assert result['changed'] is False and result['reboot_required'] is False and result['reboot_reason'] is None
    nothing = write_host_tree(tmp_path / 'c', cpuinfo_name='zen4_epyc_9654.txt')
    result = module('avic_cmdline', nothing, args=ARGS)
    assert result['target'] == 'none' and result['reboot_required'] is False
    assert 'no reboot' in result['reboot_reason']


def test_preflight_filter_gives_the_state_where_the_role_stops_or_reports(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    hidden = gather_facts.gather(root=write_host_tree(tmp_path / 'a', cpuinfo_name='zen3_ryzen_5950x.txt'))
    stop = role_filters.host_preflight(hidden, iommu_args=['iommu=pt'])
    assert stop['action'] == 'stop' and stop['status']['state'] == 'failed'
    assert stop['status']['reasons'] == stop['reasons'] and 'avic_host_force_avic: true' in stop['reasons'][0]
    intel = gather_facts.gather(root=write_host_tree(tmp_path / 'b', cpuinfo_name='intel_xeon_gold_6338.txt'))
    report = role_filters.host_preflight(intel)
    assert report['action'] == 'report' and report['status']['state'] == 'unsupported'
    assert role_filters.host_preflight(hidden, force_avic=True)['status'] is None


def test_state_reasons_carry_what_happened_in_the_roles_order(tmp_path):
    facts = gather_facts.gather(root=write_host_tree(
        tmp_path, cpuinfo_name='zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '0'},
        cmdline='root=/dev/sda1 amd_iommu=on iommu=pt'))
    opts = {'avic': '1', 'npt': '1', 'nested': '0'}
    events = {'reload_error': 'FATAL: Module kvm_amd is in use.', 'reload_guests': ['win11', 'db'],
              'reboot_skipped': 'guests are running (db, win11): reboot skipped', 'notes': ['a note'],
              'check_mode': True}
    state = role_filters.host_state(facts, opts, ARGS, next_boot=None, events=events)
    assert state['state'] == 'pending_reload'
    assert state['reasons'][-5:] == [
        'FATAL: Module kvm_amd is in use.', 'guests are running (win11, db): kvm_amd was not reloaded',
        'guests are running (db, win11): reboot skipped', 'a note', 'check mode: nothing was changed']
    quiet = role_filters.host_state(facts, opts, ARGS, next_boot=None, events={'reload_guests': []})
    assert quiet['reasons'] == role_filters.host_state(facts, opts, ARGS, next_boot=None)['reasons']


MANAGED = '/etc/modprobe.d/vfio-avic-kvm_amd.conf'
WANTED = modprobe_plan.wanted_options()
CONFLICTS = {'/etc/modprobe.d/zz-local.conf': 'options kvm_amd avic=0\n',
             '/lib/modprobe.d/aa-vendor.conf': 'options kvm_amd nested=1 avic=0\n',
             '/etc/modprobe.d/other.conf': 'options kvm_intel nested=1\n'}


@pytest.mark.parametrize('extra, params, comment', [
    ({}, {'avic': 'N', 'npt': 'Y', 'nested': '0'}, False),
    ({}, {'avic': 'Y', 'npt': 'Y', 'nested': '0'}, False),
    ({}, None, False),
    (CONFLICTS, {'avic': 'Y', 'npt': 'Y', 'nested': '0'}, False),
    ({'/usr/lib/modprobe.d/vendor.conf': 'options kvm_amd avic=0\n'}, None, True),
], ids=['reload-needed', 'active', 'not-loaded', 'conflicts-reported', 'conflict-outside-etc'])
def test_the_facts_decide_what_avic_modprobe_returns_when_the_file_is_as_wanted(tmp_path, extra, params, comment):
    files = dict(extra, **{MANAGED: modprobe_plan.modprobe_text(WANTED)})
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', params=params, files=files)
    facts = gather_facts.gather(root=str(root))
    settled = modprobe_plan.settled_from_facts(facts, MANAGED, WANTED, comment, root=str(root))
    result = module('avic_modprobe', root, comment_conflicts=comment)
    assert result['changed'] is False
    assert settled is not None
    for key in ('changed', 'path', 'options', 'conflicts', 'commented', 'backups', 'reload_required',
                'loaded', 'reload_differs'):
        assert settled[key] == result[key], key


@pytest.mark.parametrize('managed, comment', [
    (None, False),
    ('options kvm_amd avic=1 npt=1 nested=0\n', False),
    (modprobe_plan.modprobe_text(WANTED) + '# a line of mine\n', False),
    (modprobe_plan.modprobe_text(WANTED), True),
], ids=['absent', 'other-text', 'edited', 'conflict-to-comment'])
def test_the_module_runs_whenever_it_may_write(tmp_path, managed, comment):
    files = dict(CONFLICTS)
    if managed is not None:
        files[MANAGED] = managed
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', files=files)
    facts = gather_facts.gather(root=str(root))
    assert modprobe_plan.settled_from_facts(facts, MANAGED, WANTED, comment, root=str(root)) is None
    assert module('avic_modprobe', root, '--check', comment_conflicts=comment)['changed'] is True


def test_facts_read_elsewhere_or_without_texts_decide_nothing(tmp_path):
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt',
                           files={MANAGED: modprobe_plan.modprobe_text(WANTED)})
    facts = gather_facts.gather(root=str(root))
    assert facts['modprobe']['texts'] == {MANAGED: modprobe_plan.modprobe_text(WANTED)}
    assert modprobe_plan.settled_from_facts(facts, MANAGED, WANTED) is None  # read at root, not /
    older = dict(facts, modprobe=dict(facts['modprobe'], texts=None))
    assert modprobe_plan.settled_from_facts(older, MANAGED, WANTED, root=str(root)) is None


def test_preflight_filter_carries_the_settled_modprobe_result_only_when_configuring(tmp_path):
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt',
                           params={'avic': 'Y', 'npt': 'Y', 'nested': '0'},
                           files={MANAGED: modprobe_plan.modprobe_text(WANTED)})
    facts = dict(gather_facts.gather(root=str(root)), root='/')
    plan = role_filters.host_preflight(facts, modprobe_path=MANAGED)
    assert plan['action'] == 'configure'
    assert plan['modprobe']['changed'] is False and plan['modprobe']['reload_required'] is False
    assert role_filters.host_preflight(facts, modprobe_path=MANAGED, nested=True)['modprobe'] is None
    assert role_filters.host_preflight(facts)['modprobe'] is None
    with pytest.raises(AnsibleFilterError, match='avic_host_extra_options'):
        role_filters.host_preflight(facts, modprobe_path=MANAGED, extra_options={'avic': 0})


def test_a_managed_path_kmod_would_not_read_is_refused_before_the_facts_decide(tmp_path):
    vendor = '/lib/modprobe.d/vfio-avic-kvm_amd.conf'
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt',
                           files={vendor: modprobe_plan.modprobe_text(WANTED)})
    facts = dict(gather_facts.gather(root=str(root)), root='/')
    assert vendor in facts['modprobe']['texts']
    with pytest.raises(AnsibleFilterError, match='avic_host_modprobe_path must be a file directly in /etc/modprobe.d/'):
        role_filters.host_preflight(facts, modprobe_path=vendor)
    status, result = run_ansible_module('vfio.avic.avic_modprobe', json.dumps({'root': str(root), 'path': vendor}))
    assert 'FAILED' in status and result['msg'].startswith('path must be a file directly in /etc/modprobe.d/')
