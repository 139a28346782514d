# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.rules import cpu as cpu_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host
from ansible_collections.vfio.avic.plugins.module_utils.rules import topology as apic_topology

ZEN3_61 = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False}
ZEN4_68 = {'kernel': '6.8.0-45-generic', 'avic': True, 'x2avic': True}
OLD_54 = {'kernel': '5.4.0-42-generic', 'avic': True, 'x2avic': False}

# fixture -> (ids on ZEN3_61, ids on ZEN4_68)
EXPECTED = {
    'clean_linux.xml': ([], []),
    'clean_windows.xml': ([], []),
    'clean_windows_hv_avic.xml': ([], []),
    'x2apic_exposed.xml': (['x2apic_exposed'], []),
    'linux_defaults.xml': (['pit_reinject', 'svm_exposed', 'x2apic_exposed'], ['pit_reinject', 'svm_exposed']),
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
    'too_many_vcpus.xml': (['too_many_vcpus'], []),
    'sev_es_guest.xml': (['sev_guest'], ['sev_guest']),
    'sev_guest_plain.xml': (['sev_guest'], ['sev_guest']),
    'sev_snp_guest.xml': (['sev_guest'], ['sev_guest']),
    'not_kvm.xml': (['domain_not_kvm'], ['domain_not_kvm']),
    'not_kvm_cpu_missing.xml': (['cpu_mode_not_host', 'domain_not_kvm', 'x2apic_exposed'],
                                ['cpu_mode_not_host', 'domain_not_kvm']),
    'hyperv_passthrough.xml': (['hyperv_passthrough'], ['hyperv_passthrough']),
    'hyperv_passthrough_hv_avic.xml': (['hyperv_passthrough'], ['hyperv_passthrough']),
    'cpu_named_model.xml': (['cpu_mode_not_host'], ['cpu_mode_not_host']),
    'svm_required_named_model.xml': (['cpu_mode_not_host', 'svm_exposed'], ['cpu_mode_not_host', 'svm_exposed']),
    'pit_split_irqchip.xml': ([], []),
    'pit_not_present.xml': (['pit_reinject'], ['pit_reinject']),
    'topology_3_sockets.xml': (['too_many_vcpus'], []),
    'topology_640_vcpus.xml': (['too_many_vcpus'], ['too_many_vcpus']),
}


def audit_ids(xml, host):
    return sorted(f['id'] for f in libvirt_domain.audit_domain(xml, host))


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_fixture_findings(domain_xml, name):
    on_61, on_68 = EXPECTED[name]
    assert audit_ids(domain_xml(name), ZEN3_61) == on_61
    assert audit_ids(domain_xml(name), ZEN4_68) == on_68


def _severity(xml, host, id_):
    return [f['severity'] for f in libvirt_domain.audit_domain(xml, host) if f['id'] == id_]


def test_x2apic_is_inhibit_before_6_0_and_warning_after(domain_xml):
    xml = domain_xml('x2apic_exposed.xml')
    assert _severity(xml, {'kernel': '5.15.0', 'avic': True, 'x2avic': True}, 'x2apic_exposed') == ['inhibit']
    assert _severity(xml, ZEN3_61, 'x2apic_exposed') == ['warning']


def host(kernel, **more):
    """An AMD host with AVIC on; x2avic and nested as given (nested unknown by default)."""
    return dict({'kernel': kernel, 'avic': True, 'x2avic': False}, **more)


@pytest.mark.parametrize('kernel, nested, severity', [
    ('5.5.19', True, 'warning'),     # no NESTED inhibit before 5.6: AVIC stays on, unsupported
    ('5.6.0', True, 'inhibit'),      # svm_vcpu_after_set_cpuid: nested=1 and SVM in CPUID
    ('5.18.19', True, 'inhibit'),
    ('5.18.19', None, 'warning'),    # nested not known
    ('5.18.19', False, 'info'),      # nested=0: KVM exposes no SVM, no inhibit
    ('5.19.0', True, 'info'),        # per vCPU, only while it runs L2
    ('6.1.0-26-amd64', True, 'info'),
])
def test_svm_inhibits_only_before_5_19_with_nested_on(domain_xml, kernel, nested, severity):
    xml = domain_xml('svm_exposed.xml')
    assert _severity(xml, host(kernel, nested=nested), 'svm_exposed') == [severity]


def test_svm_message_says_per_vcpu_from_5_19(domain_xml):
    message = _message(domain_xml('svm_exposed.xml'), host('5.19.0', nested=True), 'svm_exposed')[0]
    assert 'only on a vCPU while that vCPU runs a nested guest' in message and '5.19' in message
    older = _message(domain_xml('svm_exposed.xml'), host('5.18.0', nested=True), 'svm_exposed')[0]
    assert 'whole VM' in older


def test_old_kernel_needs_split_irqchip(domain_xml):
    assert 'split_irqchip_required' in audit_ids(domain_xml('clean_linux.xml'), OLD_54)
    assert 'split_irqchip_required' not in audit_ids(domain_xml('split_irqchip.xml'), OLD_54)


def test_vapic_is_info_where_avic_is_off(domain_xml):
    host = dict(ZEN3_61, avic=False)
    assert _severity(domain_xml('hyperv_vapic.xml'), host, 'hyperv_vapic') == ['info']


def test_seed_guest_has_every_classic_inhibitor(domain_xml):
    found = set(audit_ids(domain_xml('seed_windows_before.xml'), ZEN3_61))
    assert {'hyperv_synic', 'hyperv_stimer', 'hyperv_vapic', 'pit_reinject'} <= found
    assert domain_rules.verdict(libvirt_domain.audit_domain(domain_xml('seed_windows_before.xml'),
                                                            ZEN3_61)) == 'inhibited'


def test_every_finding_names_its_source_and_fix(domain_xml):
    for name in EXPECTED:
        for item in libvirt_domain.audit_domain(domain_xml(name), ZEN3_61):
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
    with pytest.raises(libvirt_domain.DomainXMLError) as err:
        libvirt_domain.audit_domain(domain_xml('malformed.xml'), ZEN3_61, name='win10')
    assert "'win10'" in str(err.value) and 'not well-formed' in str(err.value)
    with pytest.raises(libvirt_domain.DomainXMLError) as err:
        libvirt_domain.audit_domain('<domain type="kvm"><name>x', ZEN3_61)
    assert 'starting \'<domain type="kvm"><name>x\'' in str(err.value)


@pytest.mark.parametrize('bad', ['', '   ', '<network/>', None])
def test_not_a_domain(bad):
    with pytest.raises(libvirt_domain.DomainXMLError):
        libvirt_domain.audit_domain(bad, ZEN3_61)


@pytest.mark.parametrize('host,words', [
    (None, 'must be a dict'),
    ({'kernel': '6.1'}, 'missing avic, x2avic'),
    ({'kernel': 'nonsense', 'avic': True, 'x2avic': True}, "'nonsense'"),
])
def test_bad_host(domain_xml, host, words):
    with pytest.raises(domain_host.HostFactsError) as err:
        libvirt_domain.audit_domain(domain_xml('clean_linux.xml'), host)
    assert words in str(err.value)


def _message(xml, host, id_):
    return [f['message'] for f in libvirt_domain.audit_domain(xml, host) if f['id'] == id_]


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
    assert libvirt_domain.parse_sev_policy('0x0007') == 7
    assert libvirt_domain.parse_sev_policy('0007') == 7
    assert libvirt_domain.parse_sev_policy('0x00030000') == 0x30000
    assert libvirt_domain.parse_sev_policy('0010') == 0x10, 'hex, not decimal 10'
    assert libvirt_domain.parse_sev_policy('') == 0
    assert libvirt_domain.parse_sev_policy('zz') is None


def test_named_models_and_qemu64_carry_no_svm_under_kvm(domain_xml):
    """QEMU's kvm_default_props sets svm=off on every named model: only host CPU modes or an
    explicit feature bring svm into the guest."""
    named = domain_xml('cpu_named_model.xml')
    assert "name='svm'" not in named and 'EPYC-Rome' in named
    for xml in (domain_xml('cpu_missing.xml'), named):
        for h in (host('5.4.0', nested=True), host('5.18.0', nested=True), host('6.1.0'), ZEN4_68):
            assert _severity(xml, h, 'svm_exposed') == [], h
    required = domain_xml('svm_required_named_model.xml')
    assert _severity(required, host('5.18.0', nested=True), 'svm_exposed') == ['inhibit']
    assert _severity(required, host('5.19.0', nested=True), 'svm_exposed') == ['info']
    assert 'Windows VBS, WSL2' in _message(required, host('5.19.0'), 'svm_exposed')[0]
    optional = required.replace("policy='require' name='svm'", "policy='optional' name='svm'")
    assert _severity(optional, host('5.18.0', nested=True), 'svm_exposed') == ['inhibit']


@pytest.mark.parametrize('kernel, qemu, severity', [
    ('5.14.21', '7.2.0', 'inhibit'),   # SynIC activation inhibits before 5.15, hv-avic or not
    ('5.15.0', '6.2.0', 'info'),       # passthrough includes hv-avic (HV_DEPRECATING_AEOI_RECOMMENDED)
    ('5.15.0', '6.1.1', 'inhibit'),    # no hv-avic in QEMU before 6.2
    ('5.15.0', None, 'warning'),       # QEMU not known
])
def test_hyperv_passthrough_by_kernel_and_qemu(domain_xml, kernel, qemu, severity):
    xml = domain_xml('hyperv_passthrough.xml')
    h = host(kernel, qemu=qemu) if qemu else host(kernel)
    assert _severity(xml, h, 'hyperv_passthrough') == [severity]


def test_hyperv_passthrough_with_avic_on_is_no_inhibit_from_5_15(domain_xml):
    xml = domain_xml('hyperv_passthrough_hv_avic.xml')
    for h in (host('5.15.0'), ZEN3_61, ZEN4_68):
        assert _severity(xml, h, 'hyperv_passthrough') == ['info']
        assert domain_rules.verdict(libvirt_domain.audit_domain(xml, h)) == 'ready'
    assert _severity(xml, host('5.14.0'), 'hyperv_passthrough') == ['inhibit']
    assert 'SynIC' in _message(domain_xml('hyperv_passthrough.xml'), host('5.15.0'), 'hyperv_passthrough')[0]


@pytest.mark.parametrize('kernel, ids', [
    ('5.14.21', ['hyperv_stimer', 'hyperv_synic']),
    ('5.15.0', []),
])
def test_synic_with_hv_avic_inhibits_before_5_15(domain_xml, kernel, ids):
    xml = domain_xml('clean_windows_hv_avic.xml')
    assert "<avic state='on'/>" in xml
    assert audit_ids(xml, host(kernel)) == ids
    if ids:
        assert 'whatever' in _message(xml, host(kernel), 'hyperv_synic')[0] or \
            'or not' in _message(xml, host(kernel), 'hyperv_synic')[0]


def test_vapic_and_ipi_are_info_and_vapic_is_nothing_with_hv_avic(domain_xml):
    for h in (ZEN3_61, ZEN4_68, dict(ZEN3_61, avic=False)):
        assert _severity(domain_xml('hyperv_vapic.xml'), h, 'hyperv_vapic') == ['info']
        assert _severity(domain_xml('hyperv_tlbflush_ipi.xml'), h, 'hyperv_tlbflush_ipi') == ['info']
    with_avic = domain_xml('hyperv_vapic.xml').replace('</hyperv>', "  <avic state='on'/>\n    </hyperv>")
    assert "<avic state='on'/>" in with_avic
    assert _severity(with_avic, ZEN3_61, 'hyperv_vapic') == []
    assert 'hypercalls' in _message(domain_xml('hyperv_tlbflush_ipi.xml'), ZEN3_61, 'hyperv_tlbflush_ipi')[0]
    tlbflush_only = domain_xml('hyperv_tlbflush_ipi.xml').replace("      <ipi state='on'/>\n", '')
    assert "<ipi " not in tlbflush_only
    assert _severity(tlbflush_only, ZEN3_61, 'hyperv_tlbflush_ipi') == []


def test_split_irqchip_has_no_in_kernel_pit_but_pit_present_no_keeps_it(domain_xml):
    split = domain_xml('pit_split_irqchip.xml')
    assert "<ioapic driver='qemu'/>" in split and "tickpolicy='delay'" in split
    in_kernel = split.replace("    <ioapic driver='qemu'/>\n", '')
    for h in (ZEN3_61, ZEN4_68):
        assert _severity(split, h, 'pit_reinject') == []
        assert _severity(in_kernel, h, 'pit_reinject') == ['inhibit']
        # libvirt starts QEMU with kvm-pit.lost_tick_policy=delay for present='no' (test_avic_qemu)
        assert _severity(domain_xml('pit_not_present.xml'), h, 'pit_reinject') == ['inhibit']


@pytest.mark.parametrize('kernel, severity', [
    ('5.18.19', 'warning'),   # no SEV inhibit before 5.19
    ('5.19.0', 'inhibit'),
])
def test_sev_inhibit_from_5_19(domain_xml, kernel, severity):
    for name in ('sev_guest_plain.xml', 'sev_es_guest.xml'):
        assert _severity(domain_xml(name), host(kernel), 'sev_guest') == [severity]
    if severity == 'warning':
        assert 'no SEV inhibit' in _message(domain_xml('sev_es_guest.xml'), host(kernel), 'sev_guest')[0]


@pytest.mark.parametrize('kernel, x2avic, severity', [
    ('5.5.19', False, 'info'),       # KVM with AVIC on hides x2apic itself
    ('5.6.0', False, 'inhibit'),
    ('5.19.17', True, 'inhibit'),    # VM-wide X2APIC inhibit up to 5.19, x2AVIC or not
    ('6.0.0', True, None),           # x2AVIC
    ('6.0.0', False, 'warning'),     # hybrid mode
])
def test_x2apic_by_kernel(domain_xml, kernel, x2avic, severity):
    xml = domain_xml('x2apic_exposed.xml')
    expected = [severity] if severity else []
    assert _severity(xml, host(kernel, x2avic=x2avic), 'x2apic_exposed') == expected


def test_apic_ids_come_from_the_topology():
    assert apic_topology.topology_max_apic_id(sockets=3, cores=72) == 327
    assert apic_topology.topology_max_apic_id(sockets=1, cores=144, threads=2) == 287
    assert apic_topology.topology_max_apic_id(sockets=5, cores=64, threads=2) == 639
    assert apic_topology.topology_max_apic_id(sockets=2, dies=2, cores=6, threads=2) == 0b1_1_101_1
    assert apic_topology.topology_max_apic_id() == 0


@pytest.mark.parametrize('kernel, x2avic, severity, words', [
    ('6.16.12', False, 'inhibit', 'does not start'),
    ('6.17.0', False, 'inhibit', 'PHYSICAL_ID_TOO_BIG'),
    ('6.16.12', True, None, ''),     # 327 fits x2AVIC's 0-511
])
def test_three_sockets_of_72_cores_reach_apic_id_327(domain_xml, kernel, x2avic, severity, words):
    xml = domain_xml('topology_3_sockets.xml')
    found = libvirt_domain.audit_domain(xml, host(kernel, x2avic=x2avic))
    assert 'x2apic_exposed' not in [f['id'] for f in found], 'x2apic must stay for IDs above 254'
    assert [f['severity'] for f in found if f['id'] == 'too_many_vcpus'] == ([severity] if severity else [])
    if severity:
        message = _message(xml, host(kernel, x2avic=x2avic), 'too_many_vcpus')[0]
        assert '216 vCPUs with APIC IDs up to 327' in message and words in message


@pytest.mark.parametrize('kernel, ext, severity, words', [
    ('6.16.12', None, 'inhibit', 'does not start'),
    ('6.18.2', None, 'inhibit', 'PHYSICAL_ID_TOO_BIG'),
    ('6.19.0', None, 'warning', 'X2AVIC_EXT'),
    ('6.19.0', True, None, ''),
    ('6.19.0', False, 'inhibit', 'PHYSICAL_ID_TOO_BIG'),
])
def test_apic_ids_above_511_need_x2avic_ext_on_6_19(domain_xml, kernel, ext, severity, words):
    xml = domain_xml('topology_640_vcpus.xml')
    h = host(kernel, x2avic=True, x2avic_ext=ext)
    assert _severity(xml, h, 'too_many_vcpus') == ([severity] if severity else [])
    if severity:
        assert words in _message(xml, h, 'too_many_vcpus')[0]


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
        found = libvirt_domain.audit_domain(xml, host)
        assert 'x2apic_exposed' not in [f['id'] for f in found]
        assert [f['severity'] for f in found if f['id'] == 'too_many_vcpus'] == ['inhibit']
    assert 'x2apic must stay' in _message(xml, ZEN3_61, 'too_many_vcpus')[0]


@pytest.mark.parametrize('cpuinfo_name, vendor', [('intel_xeon_gold_6338.txt', 'intel')])
def test_non_amd_host_gets_only_not_amd(domain_xml, cpuinfo, cpuinfo_name, vendor):
    cpu = cpu_rules.classify_cpu(cpuinfo(cpuinfo_name))
    assert cpu['vendor'] == vendor
    host = {'kernel': '6.1.0-26-amd64', 'avic': False, 'x2avic': False, 'cpu': cpu}
    for name in ('seed_windows_before.xml', 'x2apic_exposed.xml', 'sev_snp_guest.xml', 'clean_linux.xml'):
        found = libvirt_domain.audit_domain(domain_xml(name), host)
        assert [(f['id'], f['severity']) for f in found] == [('not_amd', 'info')], name
    message = found[0]['message']
    assert 'do not apply' in message and 'APICv' in message and 'GenuineIntel' in message
    with pytest.raises(libvirt_domain.DomainXMLError):
        libvirt_domain.audit_domain(domain_xml('malformed.xml'), host)


def test_vendor_decides_only_when_the_facts_know_it(domain_xml, cpuinfo):
    xml = domain_xml('x2apic_exposed.xml')
    for cpu in ({}, {'vendor': 'unknown', 'vendor_id': None}, cpu_rules.classify_cpu(cpuinfo('empty.txt')),
                cpu_rules.classify_cpu(cpuinfo('hygon_c86_7185.txt')),
                cpu_rules.classify_cpu(cpuinfo('zen2_epyc_7702.txt'))):
        assert audit_ids(xml, dict(ZEN3_61, cpu=cpu)) == ['x2apic_exposed'], cpu
    other = {'vendor': 'unknown', 'vendor_id': 'CentaurHauls'}
    assert audit_ids(xml, dict(ZEN3_61, cpu=other)) == ['not_amd']


def test_x2avic_ext_is_read_from_the_kernel_log_line(domain_xml):
    """6.19 logs "x2AVIC enabled (max N vCPUs)": 4096 with X2AVIC_EXT, 512 without."""
    xml = domain_xml('topology_640_vcpus.xml')
    with_ext = host('6.19.0', x2avic=True, dmesg={'x2avic_max_vcpus': 4096})
    without = host('6.19.0', x2avic=True, dmesg={'x2avic_max_vcpus': 512})
    assert _severity(xml, with_ext, 'too_many_vcpus') == []
    assert _severity(xml, without, 'too_many_vcpus') == ['inhibit']
    assert _severity(xml, host('6.19.0', x2avic=True, dmesg=None), 'too_many_vcpus') == ['warning']


def test_invtsc_is_asked_for_only_where_the_host_has_an_invariant_tsc(domain_xml):
    """QEMU refuses to start a guest that requires invtsc on a host without it (seen in the VM lab:
    'host doesn't support invariant TSC'), so such a host gets no invtsc_missing."""
    xml = domain_xml('invtsc_missing.xml')
    assert _severity(xml, ZEN4_68, 'invtsc_missing') == ['warning'], 'unknown: asked for'
    assert _severity(xml, dict(ZEN4_68, invtsc=True), 'invtsc_missing') == ['warning']
    assert _severity(xml, dict(ZEN4_68, invtsc=False), 'invtsc_missing') == []
    facts = dict(ZEN4_68, cpu={'vendor': 'amd', 'invtsc': False})
    assert _severity(xml, facts, 'invtsc_missing') == [], 'read from the cpu facts (nonstop_tsc)'
