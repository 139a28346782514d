# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight and the kvm_amd options of plan/preflight.py and plan/modprobe.py, on hosts gathered from real fixtures."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.plan import preflight as preflight_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan import modprobe as modprobe_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError
from ansible_collections.vfio.avic.plugins.filter.__roles import HOST_ROLE_NAMES
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts

from conftest import write_host_tree


def facts_for(tmp_path, cpuinfo_name, kernel='6.1.0-26-amd64', params=None, files=None):
    return gather_facts.gather(root=write_host_tree(tmp_path, cpuinfo_name=cpuinfo_name, kernel=kernel,
                                                    params=params, files=files))


def role_preflight(facts, **kwargs):
    """preflight() with the fields named as the host role's users write them."""
    return preflight_plan.preflight(facts, names=HOST_ROLE_NAMES, **kwargs)


def test_preflight_names_fields_as_the_caller_says(tmp_path):
    facts = facts_for(tmp_path, 'zen3_ryzen_5950x.txt')
    plain = preflight_plan.preflight(facts)['reasons'][0]
    assert 'set force_avic: true to accept that' in plain and 'avic_host' not in plain
    assert 'set avic_host_force_avic: true to accept that' in role_preflight(facts)['reasons'][0]
    with pytest.raises(PlanError) as err:
        preflight_plan.preflight(facts, force_avic=True, enabled=False)
    assert str(err.value).startswith('force_avic: true and avic: false contradict each other')
    assert err.value.render(HOST_ROLE_NAMES).startswith(
        'avic_host_force_avic: true and avic_host_enabled: false contradict each other')


def test_preflight_configures_a_zen2_epyc(tmp_path):
    result = role_preflight(facts_for(tmp_path, 'zen2_epyc_7702.txt', kernel='6.17.0'))
    assert result == {'action': 'configure', 'state': None, 'reasons': [], 'warnings': []}


def test_preflight_warns_of_erratum_1235_on_an_older_kernel(tmp_path):
    # Zen 2 on 6.1: IPI virtualisation stays on (no enable_ipiv, no workaround before 6.17).
    result = role_preflight(facts_for(tmp_path, 'zen2_epyc_7702.txt'))
    assert result['action'] == 'configure'
    assert len(result['warnings']) == 1 and 'erratum #1235' in result['warnings'][0]
    assert '6.17' in result['warnings'][0] and 'enable_ipiv=0' in result['warnings'][0]


def test_preflight_stops_on_pre_zen_without_offering_force_avic(tmp_path):
    for force in (False, True):
        stop = role_preflight(facts_for(tmp_path, 'piledriver_fx_8350.txt'), force_avic=force)
        assert stop['action'] == 'stop' and 'before Zen' in stop['reasons'][0]
        assert 'cannot help' in stop['reasons'][0]


def test_preflight_vm_without_avic_forces_only_for_testing(tmp_path):
    facts = facts_for(tmp_path, 'amd_vm_epyc_svm.txt', kernel='6.17.0')
    stop = role_preflight(facts)
    assert stop['action'] == 'stop' and 'KVM does not virtualise AVIC' in stop['reasons'][0]
    assert 'force_avic=1' in stop['reasons'][0] and 'avic_host_force_avic: true' in stop['reasons'][0]
    go = role_preflight(facts, force_avic=True)
    assert go['action'] == 'configure' and 'for testing only' in go['warnings'][0]


def test_preflight_stops_on_hidden_avic_unless_forced(tmp_path):
    facts = facts_for(tmp_path, 'zen3_ryzen_5950x.txt')
    stop = role_preflight(facts)
    assert stop['action'] == 'stop' and stop['state'] == 'failed'
    assert 'force_avic=1' in stop['reasons'][0] and 'avic_host_force_avic: true' in stop['reasons'][0]
    go = role_preflight(facts, force_avic=True)
    assert go['action'] == 'configure' and 'taint' in go['warnings'][0]


def test_preflight_stops_without_svm_and_reports_intel(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    nosvm = role_preflight(facts_for(tmp_path / 'a', 'amd_vm_epyc_nosvm.txt'))
    assert nosvm['action'] == 'stop' and 'firmware' in nosvm['reasons'][0]
    assert 'avic_host_allow_no_svm' in nosvm['reasons'][0]
    intel = role_preflight(facts_for(tmp_path / 'b', 'intel_xeon_gold_6338.txt',
                                     files={'/sys/module/kvm_intel/parameters/enable_apicv': 'Y\n'}))
    assert intel['action'] == 'report' and intel['state'] == 'unsupported'
    assert intel['reasons'] == ['Intel CPU: AVIC is AMD-only; kvm_intel APICv is on.']


def test_preflight_kernel_rules_and_overrides(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    old = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', kernel='4.4.0-210-generic')
    stop = role_preflight(old)
    assert stop['action'] == 'stop' and 'avic_host_allow_old_kernel' in stop['reasons'][0]
    assert role_preflight(old, allow_old_kernel=True)['action'] == 'configure'
    known = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', kernel='5.6.7')
    warned = role_preflight(known)
    assert warned['action'] == 'configure' and warned['warnings']
    refused = role_preflight(known, refuse_known_issues=True)
    assert refused['action'] == 'stop' and 'avic_host_refuse_known_issues' in refused['reasons'][0]


def test_wanted_options_defaults_force_nested_and_extra():
    assert modprobe_plan.wanted_options() == [('avic', '1'), ('npt', '1'), ('nested', '0')]
    assert modprobe_plan.wanted_options(True, True) == [('avic', '1'), ('npt', '1'), ('nested', '1'),
                                                        ('force_avic', '1')]
    extra = modprobe_plan.wanted_options(extra={'avic-ipi': False, 'sev': 1})
    assert extra[-2:] == [('avic_ipi', '0'), ('sev', '1')]
    assert modprobe_plan.wanted_options(avic=False)[0] == ('avic', '0')
    with pytest.raises(PlanError, match='^extra_options: ') as err:
        modprobe_plan.wanted_options(extra={'bad name': 1})
    assert err.value.render(HOST_ROLE_NAMES).startswith('avic_host_extra_options: ')
    with pytest.raises(PlanError, match='no spaces or quotes'):
        modprobe_plan.wanted_options(extra={'x': 'a b'})


@pytest.mark.parametrize('key, variable', [('avic', 'avic_host_enabled'), ('nested', 'avic_host_nested'),
                                           ('force-avic', 'avic_host_force_avic'), ('npt', 'always written')])
def test_managed_options_are_refused_in_extra_options_by_name(key, variable):
    with pytest.raises(PlanError) as err:
        modprobe_plan.wanted_options(extra={key: '0'})
    role = err.value.render(HOST_ROLE_NAMES)
    assert 'avic_host_extra_options' in role and variable in role
    assert key.replace('-', '_') + ' is managed' in role
    # the module's own message names its options (extra_options, avic, nested, force_avic)
    assert str(err.value).startswith('extra_options: ') and 'avic_host' not in str(err.value)


def test_force_avic_with_avic_off_is_a_contradiction():
    with pytest.raises(PlanError, match='force_avic: true and avic: false') as err:
        modprobe_plan.wanted_options(force_avic=True, avic=False)
    assert re.search('avic_host_force_avic.*avic_host_enabled', err.value.render(HOST_ROLE_NAMES))


def test_modprobe_text_has_a_header_and_one_options_line():
    text = modprobe_plan.modprobe_text(modprobe_plan.wanted_options())
    assert text.startswith('# Managed by Ansible (vfio.avic.host)')
    assert text.splitlines()[-1] == 'options kvm_amd avic=1 npt=1 nested=0'


def test_conflicts_know_who_wins():
    files = [('/etc/modprobe.d/kvm.conf', 'options kvm-amd nested=1 avic=1\n'),
             ('/etc/modprobe.d/vfio-avic-kvm_amd.conf', modprobe_plan.modprobe_text(modprobe_plan.wanted_options())),
             ('/etc/modprobe.d/zz-local.conf', 'options kvm_amd avic=0 npt=1\nblacklist kvm_amd\n')]
    found = modprobe_plan.conflicts(files, '/etc/modprobe.d/vfio-avic-kvm_amd.conf', modprobe_plan.wanted_options())
    by = dict(((c['path'], c['option']), c) for c in found)
    assert by[('/etc/modprobe.d/kvm.conf', 'nested')]['wins'] is False
    assert by[('/etc/modprobe.d/zz-local.conf', 'avic')]['wins'] is True
    assert by[('/etc/modprobe.d/zz-local.conf', None)]['message'].endswith('blacklists kvm_amd')
    assert ('/etc/modprobe.d/kvm.conf', 'avic') not in by and ('/etc/modprobe.d/zz-local.conf', 'npt') not in by


def test_comment_conflicts_keeps_unrelated_options_and_lines():
    text = '# mine\noptions kvm_amd nested=1 sev=0\noptions kvm_intel nested=1\n'
    out = modprobe_plan.comment_conflicts(text, {'nested'})
    assert out == ('# mine\n# options kvm_amd nested=1 sev=0  # disabled by vfio.avic.host\n'
                   'options kvm_amd sev=0\noptions kvm_intel nested=1\n')
    assert modprobe_plan.comment_conflicts(out, {'nested'}) == out
