# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import avic_domain

ZEN3_61 = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False}
ZEN4_68 = {'kernel': '6.8.0-45-generic', 'avic': True, 'x2avic': True}
OLD_54 = {'kernel': '5.4.0-42-generic', 'avic': True, 'x2avic': False}

# fixture -> (ids on ZEN3_61, ids on ZEN4_68)
EXPECTED = {
    'clean_linux.xml': ([], []),
    'clean_windows.xml': ([], []),
    'clean_windows_hv_avic.xml': ([], []),
    'x2apic_exposed.xml': (['x2apic_exposed'], []),
    'svm_exposed.xml': (['svm_exposed'], ['svm_exposed']),
    'pit_reinject.xml': (['pit_reinject'], ['pit_reinject']),
    'pit_missing.xml': (['pit_reinject'], ['pit_reinject']),
    'hyperv_synic.xml': (['hyperv_synic'], ['hyperv_synic']),
    'hyperv_stimer.xml': (['hyperv_stimer', 'hyperv_synic'], ['hyperv_stimer', 'hyperv_synic']),
    'hyperv_vapic.xml': (['hyperv_vapic'], ['hyperv_vapic']),
    'hyperv_tlbflush_ipi.xml': (['hyperv_tlbflush_ipi'], ['hyperv_tlbflush_ipi']),
    'hypervclock_missing.xml': (['hypervclock_missing'], ['hypervclock_missing']),
    'invtsc_missing.xml': (['invtsc_missing'], ['invtsc_missing']),
    'split_irqchip.xml': ([], []),
    'cpu_mode_custom.xml': (['cpu_mode_not_host'], ['cpu_mode_not_host']),
    'cpu_missing.xml': (['cpu_mode_not_host', 'x2apic_exposed'], ['cpu_mode_not_host']),
    'too_many_vcpus.xml': (['too_many_vcpus', 'x2apic_exposed'], []),
    'sev_es_guest.xml': (['sev_guest'], ['sev_guest']),
    'sev_guest_plain.xml': ([], []),
    'sev_snp_guest.xml': (['sev_guest'], ['sev_guest']),
    'not_kvm.xml': (['domain_not_kvm'], ['domain_not_kvm']),
}


def audit_ids(xml, host):
    return sorted(f['id'] for f in avic_domain.audit_domain(xml, host))


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_fixture_findings(domain_xml, name):
    on_61, on_68 = EXPECTED[name]
    assert audit_ids(domain_xml(name), ZEN3_61) == on_61
    assert audit_ids(domain_xml(name), ZEN4_68) == on_68


def _severity(xml, host, id_):
    return [f['severity'] for f in avic_domain.audit_domain(xml, host) if f['id'] == id_]


def test_x2apic_is_inhibit_before_6_0_and_warning_after(domain_xml):
    xml = domain_xml('x2apic_exposed.xml')
    assert _severity(xml, {'kernel': '5.15.0', 'avic': True, 'x2avic': True}, 'x2apic_exposed') == ['inhibit']
    assert _severity(xml, ZEN3_61, 'x2apic_exposed') == ['warning']


def test_svm_is_inhibit_before_5_19_warning_after_info_with_nested_off(domain_xml):
    xml = domain_xml('svm_exposed.xml')
    assert _severity(xml, OLD_54, 'svm_exposed') == ['inhibit']
    assert _severity(xml, ZEN3_61, 'svm_exposed') == ['warning']
    host = dict(ZEN3_61, kvm_amd={'loaded': True, 'parameters': {'nested': '0'}})
    assert _severity(xml, host, 'svm_exposed') == ['info']


def test_old_kernel_needs_split_irqchip(domain_xml):
    assert 'split_irqchip_required' in audit_ids(domain_xml('clean_linux.xml'), OLD_54)
    assert 'split_irqchip_required' not in audit_ids(domain_xml('split_irqchip.xml'), OLD_54)


def test_vapic_is_info_where_avic_is_off(domain_xml):
    host = dict(ZEN3_61, avic=False)
    assert _severity(domain_xml('hyperv_vapic.xml'), host, 'hyperv_vapic') == ['info']


def test_seed_guest_has_every_classic_inhibitor(domain_xml):
    found = set(audit_ids(domain_xml('seed_windows_before.xml'), ZEN3_61))
    assert {'hyperv_synic', 'hyperv_stimer', 'hyperv_vapic', 'pit_reinject'} <= found
    assert avic_domain.verdict(avic_domain.audit_domain(domain_xml('seed_windows_before.xml'),
                                                        ZEN3_61)) == 'inhibited'


def test_every_finding_names_its_source_and_fix(domain_xml):
    for name in EXPECTED:
        for item in avic_domain.audit_domain(domain_xml(name), ZEN3_61):
            assert set(item) == {'id', 'severity', 'message', 'fix'}
            assert any(word in item['message'] for word in ('known', 'reported', 'not confirmed',
                                                            'only applies', 'may lack'))
            if item['severity'] == 'inhibit':
                assert item['fix']


def test_facts_dict_is_accepted_as_host(domain_xml):
    facts = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False, 'cpu': {}, 'findings': [],
             'kvm_amd': {'loaded': True, 'parameters': {'avic': 'Y', 'nested': '0'}}}
    assert audit_ids(domain_xml('clean_linux.xml'), facts) == []


def test_malformed_xml_names_the_domain_and_the_parse_error(domain_xml):
    with pytest.raises(avic_domain.DomainXMLError) as err:
        avic_domain.audit_domain(domain_xml('malformed.xml'), ZEN3_61, name='win10')
    assert "'win10'" in str(err.value) and 'not well-formed' in str(err.value)
    with pytest.raises(avic_domain.DomainXMLError) as err:
        avic_domain.audit_domain('<domain type="kvm"><name>x', ZEN3_61)
    assert 'starting \'<domain type="kvm"><name>x\'' in str(err.value)


@pytest.mark.parametrize('bad', ['', '   ', '<network/>', None])
def test_not_a_domain(bad):
    with pytest.raises(avic_domain.DomainXMLError):
        avic_domain.audit_domain(bad, ZEN3_61)


@pytest.mark.parametrize('host,words', [
    (None, 'must be a dict'),
    ({'kernel': '6.1'}, 'missing avic, x2avic'),
    ({'kernel': 'nonsense', 'avic': True, 'x2avic': True}, "'nonsense'"),
])
def test_bad_host(domain_xml, host, words):
    with pytest.raises(avic_domain.HostFactsError) as err:
        avic_domain.audit_domain(domain_xml('clean_linux.xml'), host)
    assert words in str(err.value)
