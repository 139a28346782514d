# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.rules import host as host_rules
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool


def test_pending_compares_booleans_and_text():
    diffs = host_rules.pending_differences({'avic': 'N', 'npt': 'Y', 'nested': '1', 'x': 'abc'},
                                           {'avic': '1', 'npt': '1', 'nested': '0', 'x': 'abc', 'y': '1'})
    assert diffs == {'avic': {'configured': '1', 'running': 'N'},
                     'nested': {'configured': '0', 'running': '1'}}


@pytest.mark.parametrize('value,expected', [('Y', True), ('1', True), ('N', False), ('0', False),
                                            ('auto', None), (None, None), (True, True)])
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


def _facts(cpu_status='supported', vendor='amd', params=None, loaded=True, kernel='6.1.0-26-amd64',
           **extra):
    facts = {
        'cpu': {'vendor': vendor, 'status': cpu_status, 'npt': True, 'erratum_1235': False,
                'message': 'cpu message'},
        'kernel': kernel,
        'kvm_amd': {'loaded': loaded, 'parameters': params or {}},
    }
    facts.update(extra)
    return facts


def ids(findings):
    return sorted(f['id'] for f in findings)


def test_active_host_has_no_inhibit():
    facts = _facts(params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    findings = host_rules.host_findings(facts)
    assert ids(findings) == []
    assert host_rules.host_status(facts, findings) == 'active'


def test_avic_off_nested_on_pending():
    facts = _facts(params={'avic': 'N', 'npt': 'Y', 'nested': '1'},
                   pending={'avic': {'configured': '1', 'running': 'N'}})
    findings = host_rules.host_findings(facts)
    assert ids(findings) == ['avic_disabled', 'nested_enabled', 'pending_reload']
    assert [f['severity'] for f in findings if f['id'] == 'nested_enabled'] == ['info']
    assert host_rules.host_status(facts, findings) == 'inactive'


def test_nested_inhibits_on_old_kernels():
    findings = host_rules.host_findings(_facts(params={'avic': 'Y', 'nested': '1'}, kernel='5.15.0'))
    assert [f['severity'] for f in findings if f['id'] == 'nested_enabled'] == ['inhibit']


def test_hidden_cpu_is_inhibit_until_forced():
    assert 'avic_cpuid_hidden' in ids(host_rules.host_findings(_facts('cpuid_hidden',
                                                                      params={'avic': 'N'})))
    forced = host_rules.host_findings(_facts('cpuid_hidden', params={'avic': 'Y', 'force_avic': 'Y'}))
    assert 'avic_cpuid_hidden' not in ids(forced) and 'avic_forced' in ids(forced)


def test_non_amd_hosts_get_one_info_and_no_kernel_noise():
    facts = _facts('unsupported_vendor', vendor='intel', loaded=False, kernel='6.18.0')
    findings = host_rules.host_findings(facts)
    assert ids(findings) == ['not_amd']
    assert host_rules.host_status(facts, findings) == 'unsupported'


def test_svm_unavailable_stops_there():
    findings = host_rules.host_findings(_facts('svm_unavailable', loaded=False, container='podman'))
    assert ids(findings) == ['in_container', 'svm_unavailable']


def test_erratum_and_iommu_legacy():
    facts = _facts(params={'avic': 'Y', 'enable_ipiv': 'N'}, iommu={'amd_iommu_intr': 'legacy'})
    facts['cpu']['erratum_1235'] = True
    assert ids(host_rules.host_findings(facts)) == ['iommu_avic_off', 'ipiv_erratum']


def test_not_loaded():
    facts = _facts(loaded=False)
    findings = host_rules.host_findings(facts)
    assert ids(findings) == ['kvm_amd_not_loaded']
    assert host_rules.host_status(facts, findings) == 'inactive'


@pytest.mark.parametrize('kernel,shown', [('weird', "'weird'"), (None, 'None'), ('6.x', "'6.x'")])
def test_unparseable_kernel_release_has_its_own_finding(kernel, shown):
    facts = _facts(params={'avic': 'Y', 'npt': 'Y', 'nested': '0'}, kernel=kernel)
    findings = host_rules.host_findings(facts)
    assert ids(findings) == ['kernel_unparseable']
    unparseable = findings[0]
    assert unparseable['severity'] == 'warning' and shown in unparseable['message']
    assert 'No kernel rule' in unparseable['message'] and 'uname -r' in unparseable['fix']
    assert 'cpu_unknown' not in ids(findings)
    assert host_rules.host_status(facts, findings) == 'active'


def test_unparseable_kernel_keeps_the_nested_rule_conservative():
    findings = host_rules.host_findings(_facts(params={'avic': 'Y', 'nested': '1'}, kernel='weird'))
    assert ids(findings) == ['kernel_unparseable', 'nested_enabled']
    assert [f['severity'] for f in findings if f['id'] == 'nested_enabled'] == ['inhibit']
