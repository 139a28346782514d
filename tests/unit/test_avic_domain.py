# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import avic_cpu, avic_domain

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
    'cpu_missing.xml': (['cpu_mode_not_host', 'svm_exposed', 'x2apic_exposed'],
                        ['cpu_mode_not_host', 'svm_exposed']),
    'too_many_vcpus.xml': (['too_many_vcpus'], []),
    'sev_es_guest.xml': (['sev_guest'], ['sev_guest']),
    'sev_guest_plain.xml': (['sev_guest'], ['sev_guest']),
    'sev_snp_guest.xml': (['sev_guest'], ['sev_guest']),
    'not_kvm.xml': (['domain_not_kvm'], ['domain_not_kvm']),
    'not_kvm_cpu_missing.xml': (['cpu_mode_not_host', 'domain_not_kvm', 'svm_exposed', 'x2apic_exposed'],
                                ['cpu_mode_not_host', 'domain_not_kvm', 'svm_exposed']),
    'hyperv_passthrough.xml': (['hyperv_passthrough'], ['hyperv_passthrough']),
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


def _message(xml, host, id_):
    return [f['message'] for f in avic_domain.audit_domain(xml, host) if f['id'] == id_]


@pytest.mark.parametrize('name', ['sev_guest_plain.xml', 'sev_es_guest.xml', 'sev_snp_guest.xml'])
def test_every_sev_guest_is_an_inhibit(domain_xml, name):
    """sev_guest_init() sets APICV_INHIBIT_REASON_SEV for plain SEV guests too, not only SEV-ES/SNP."""
    for host in (ZEN3_61, ZEN4_68):
        assert _severity(domain_xml(name), host, 'sev_guest') == ['inhibit']


@pytest.mark.parametrize('policy, kind', [
    ('0x0003', 'SEV guest'), ('0003', 'SEV guest'), ('0x0007', 'SEV-ES guest'), ('0007', 'SEV-ES guest'),
    ('7', 'SEV-ES guest'), ('0x000C', 'SEV-ES guest'), ('not-hex', 'SEV guest'),
])
def test_sev_policy_is_read_as_hex(domain_xml, policy, kind):
    xml = domain_xml('sev_es_guest.xml').replace('<policy>0x0007</policy>', '<policy>%s</policy>' % policy)
    assert policy in xml
    assert _message(xml, ZEN3_61, 'sev_guest')[0].startswith(kind)


def test_sev_policy_parser():
    assert avic_domain.parse_sev_policy('0x0007') == 7
    assert avic_domain.parse_sev_policy('0007') == 7
    assert avic_domain.parse_sev_policy('0x00030000') == 0x30000
    assert avic_domain.parse_sev_policy('0010') == 0x10, 'hex, not decimal 10'
    assert avic_domain.parse_sev_policy('') == 0
    assert avic_domain.parse_sev_policy('zz') is None


def test_svm_is_exposed_without_cpu_or_with_a_named_model(domain_xml):
    """qemu64 (no <cpu>) and the EPYC models carry svm: the rule is the same as host-passthrough."""
    no_cpu = domain_xml('cpu_missing.xml')
    named = domain_xml('cpu_mode_custom.xml').replace("    <feature policy='disable' name='svm'/>\n", '')
    assert "name='svm'" not in named and 'EPYC' in named
    for xml in (no_cpu, named):
        assert _severity(xml, OLD_54, 'svm_exposed') == ['inhibit']
        assert _severity(xml, ZEN3_61, 'svm_exposed') == ['warning']
        assert _severity(xml, dict(ZEN3_61, nested=False), 'svm_exposed') == ['info']
        assert _severity(xml, dict(ZEN3_61, nested=True), 'svm_exposed') == ['warning']
    assert _severity(domain_xml('cpu_mode_custom.xml'), ZEN3_61, 'svm_exposed') == []


def test_hyperv_passthrough_is_an_inhibit_unless_hv_avic(domain_xml):
    xml = domain_xml('hyperv_passthrough.xml')
    assert _severity(xml, ZEN3_61, 'hyperv_passthrough') == ['inhibit']
    assert 'SynIC' in _message(xml, ZEN3_61, 'hyperv_passthrough')[0]
    with_avic = xml.replace("<hyperv mode='passthrough'/>",
                            "<hyperv mode='passthrough'>\n      <avic state='on'/>\n    </hyperv>")
    assert with_avic != xml
    assert _severity(with_avic, ZEN3_61, 'hyperv_passthrough') == ['info']
    assert avic_domain.verdict(avic_domain.audit_domain(with_avic, ZEN3_61)) == 'ready'


def test_cpu_mode_and_hybrid_x2apic_messages_say_how_sure_they_are(domain_xml):
    message = _message(domain_xml('cpu_mode_custom.xml'), ZEN3_61, 'cpu_mode_not_host')[0]
    assert 'reported' in message and 'known' not in message
    hybrid = _message(domain_xml('x2apic_exposed.xml'), ZEN3_61, 'x2apic_exposed')[0]
    assert 'hybrid' in hybrid and 'gain remains in that mode is unverified' in hybrid
    assert 'known;' not in hybrid and 'gain' not in hybrid.split('(known')[0]
    tcg = _message(domain_xml('not_kvm_cpu_missing.xml'), ZEN3_61, 'cpu_mode_not_host')[0]
    assert 'QEMU TCG cannot run the host CPU model' in tcg


def test_more_than_255_vcpus_report_too_many_vcpus_not_x2apic(domain_xml):
    xml = domain_xml('too_many_vcpus.xml')
    for host in (ZEN3_61, {'kernel': '5.15.0-91-generic', 'avic': True, 'x2avic': True}):
        found = avic_domain.audit_domain(xml, host)
        assert 'x2apic_exposed' not in [f['id'] for f in found]
        assert [f['severity'] for f in found if f['id'] == 'too_many_vcpus'] == ['inhibit']
    assert 'x2apic must stay' in _message(xml, ZEN3_61, 'too_many_vcpus')[0]


@pytest.mark.parametrize('cpuinfo_name, vendor', [('intel_xeon_gold_6338.txt', 'intel')])
def test_non_amd_host_gets_only_not_amd(domain_xml, cpuinfo, cpuinfo_name, vendor):
    cpu = avic_cpu.classify_cpu(cpuinfo(cpuinfo_name))
    assert cpu['vendor'] == vendor
    host = {'kernel': '6.1.0-26-amd64', 'avic': False, 'x2avic': False, 'cpu': cpu}
    for name in ('seed_windows_before.xml', 'x2apic_exposed.xml', 'sev_snp_guest.xml', 'clean_linux.xml'):
        found = avic_domain.audit_domain(domain_xml(name), host)
        assert [(f['id'], f['severity']) for f in found] == [('not_amd', 'info')], name
    message = found[0]['message']
    assert 'do not apply' in message and 'APICv' in message and 'GenuineIntel' in message
    with pytest.raises(avic_domain.DomainXMLError):
        avic_domain.audit_domain(domain_xml('malformed.xml'), host)


def test_vendor_decides_only_when_the_facts_know_it(domain_xml, cpuinfo):
    xml = domain_xml('x2apic_exposed.xml')
    for cpu in ({}, {'vendor': 'unknown', 'vendor_id': None}, avic_cpu.classify_cpu(cpuinfo('empty.txt')),
                avic_cpu.classify_cpu(cpuinfo('hygon_c86_7185.txt')),
                avic_cpu.classify_cpu(cpuinfo('zen2_epyc_7702.txt'))):
        assert audit_ids(xml, dict(ZEN3_61, cpu=cpu)) == ['x2apic_exposed'], cpu
    other = {'vendor': 'unknown', 'vendor_id': 'CentaurHauls'}
    assert audit_ids(xml, dict(ZEN3_61, cpu=other)) == ['not_amd']
