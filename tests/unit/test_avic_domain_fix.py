# -*- coding: utf-8 -*-
"""The XML transformation of avic_domain on the fixture domains."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.rules import cpu as cpu_rules

from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_fix as fix
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import versions as libvirt_versions

from conftest import REPO

DOMAINS = os.path.join(REPO, 'tests', 'fixtures', 'domains')
ZEN2_61 = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False, 'nested': False}
ZEN4_618 = {'kernel': '6.18.2-arch2-1', 'avic': True, 'x2avic': True, 'nested': False}
OLD_54 = {'kernel': '5.4.0-150-generic', 'avic': True, 'x2avic': False, 'nested': True}
OLD_518 = {'kernel': '5.18.19', 'avic': True, 'x2avic': False, 'nested': True}
HV_AVIC = {'hv_avic': True}
FIXABLE = {'x2apic_exposed', 'svm_exposed', 'pit_reinject', 'hyperv_synic', 'hyperv_stimer',
           'hyperv_vapic', 'hypervclock_missing', 'invtsc_missing', 'split_irqchip_required',
           'cpu_mode_not_host'}
UNFIXABLE = {'too_many_vcpus', 'sev_guest', 'sev_es_guest', 'domain_not_kvm', 'hyperv_tlbflush_ipi',
             'hyperv_passthrough'}


def read(name):
    with open(os.path.join(DOMAINS, name)) as handle:
        return handle.read()


def canon(element):
    return ET.canonicalize(ET.tostring(element), strip_text=True)


def ids(findings, severity=None):
    return sorted(set(f['id'] for f in findings if severity is None or f['severity'] == severity))


def test_seed_windows_guest_is_fixed_with_hv_avic_and_keeps_everything_else():
    xml = read('seed_windows_before.xml')
    result = fix.fix_domain(xml, ZEN2_61, caps=HV_AVIC, name='win10')
    assert result['changed']
    assert ids(result['findings_before'], 'inhibit') == ['hyperv_synic', 'pit_reinject']
    assert 'x2apic_exposed' in ids(result['findings_before'], 'warning'), 'hybrid mode on 6.1 without x2AVIC'
    assert ids(result['findings_after'], 'inhibit') == []
    root = ET.fromstring(result['xml'])
    hv = root.find('features/hyperv')
    assert hv.find('avic').get('state') == 'on' and hv.find('synic') is not None
    assert hv.find('stimer') is not None and hv.find('vapic').get('state') == 'off'
    assert root.find("clock/timer[@name='pit']").get('tickpolicy') == 'discard'
    assert root.find("cpu/feature[@name='x2apic']").get('policy') == 'disable'
    assert root.find("cpu/feature[@name='invtsc']").get('policy') == 'require'
    before = ET.fromstring(xml)
    for path in ('devices', 'metadata', 'cputune', 'os', 'pm', '{http://libvirt.org/schemas/domain/qemu/1.0}commandline'):
        assert canon(root.find(path)) == canon(before.find(path)), path
    assert "xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\"" in result['xml']
    assert '<qemu:arg value="-fw_cfg" />' in result['xml'] or "<qemu:arg value=\"-fw_cfg\"/>" in result['xml']
    assert [c.tag for c in root] == [c.tag for c in before], 'element order kept'
    assert fix.fix_domain(result['xml'], ZEN2_61, caps=HV_AVIC, name='win10')['changed'] is False


def test_without_hv_avic_synic_and_stimer_are_removed_with_a_note():
    result = fix.fix_domain(read('seed_windows_before.xml'), ZEN2_61, caps={'hv_avic_reason': 'libvirt 8.0'})
    hv = ET.fromstring(result['xml']).find('features/hyperv')
    assert hv.find('synic') is None and hv.find('stimer') is None and hv.find('avic') is None
    assert [n for n in result['notes'] if 'libvirt 8.0' in n], result['notes']
    assert 'hyperv_synic' not in ids(result['findings_after'])


def test_x2avic_host_keeps_x2apic_and_nested_keeps_svm():
    result = fix.fix_domain(read('x2apic_exposed.xml'), ZEN4_618, name='x')
    assert 'x2apic_exposed' not in ids(result['findings_before'])
    assert ET.fromstring(result['xml']).find("cpu/feature[@name='x2apic']") is None
    nested = dict(OLD_518, nested=True)
    kept = fix.fix_domain(read('svm_exposed.xml'), nested, {'nested': True}, name='svm')
    assert ET.fromstring(kept['xml']).find("cpu/feature[@name='svm'][@policy='disable']") is None
    gone = fix.fix_domain(read('svm_exposed.xml'), nested, name='svm')
    assert ET.fromstring(gone['xml']).find("cpu/feature[@name='svm']").get('policy') == 'disable'


def test_old_kernel_gets_the_split_irqchip_and_options_are_respected():
    result = fix.fix_domain(read('split_irqchip.xml'), OLD_54, name='old')
    assert ET.fromstring(result['xml']).find('features/ioapic').get('driver') == 'qemu'
    assert 'split_irqchip_required' not in ids(result['findings_after'])
    keep = fix.fix_domain(read('pit_reinject.xml'), ZEN2_61, {'pit': 'keep', 'x2apic': 'keep'})
    assert 'pit_reinject' in ids(keep['findings_after'])
    forced = fix.fix_domain(read('clean_linux.xml'), ZEN4_618, {'ioapic': 'qemu'})
    assert forced['changed'] and ET.fromstring(forced['xml']).find('features/ioapic').get('driver') == 'qemu'


@pytest.mark.parametrize('name', sorted(n for n in os.listdir(DOMAINS) if n.endswith('.xml') and n != 'malformed.xml'))
def test_every_fixture_ends_with_only_unfixable_findings(name):
    for host in (ZEN2_61, ZEN4_618, OLD_54, OLD_518):
        result = fix.fix_domain(read(name), host, caps=HV_AVIC, name=name)
        # what is only information (svm that does not inhibit, x2apic that KVM hides) is kept
        left = set(f['id'] for f in result['findings_after'] if f['severity'] != 'info')
        # a non-KVM domain keeps its CPU model: QEMU TCG cannot run the host's
        unfixable = UNFIXABLE | ({'cpu_mode_not_host'} if "<domain type='qemu'" in read(name) else set())
        if "policy='require' name='svm'" in read(name) and host['kernel'].startswith('5.4'):
            # an explicit svm is kept where it does not inhibit (no NESTED inhibit before 5.6)
            unfixable = unfixable | {'svm_exposed'}
        assert left <= unfixable, (name, host, left)
        again = fix.fix_domain(result['xml'], host, caps=HV_AVIC, name=name)
        assert again['changed'] is False, (name, again['changes'])


def test_clean_domains_are_left_byte_for_byte():
    for name in ('clean_linux.xml', 'clean_windows_hv_avic.xml'):
        xml = read(name)
        result = fix.fix_domain(xml, ZEN4_618, caps=HV_AVIC, name=name)
        assert result['changed'] is False and result['xml'] == xml


def test_bad_input_is_named():
    with pytest.raises(libvirt_domain.DomainXMLError, match='not well-formed'):
        fix.fix_domain(read('malformed.xml'), ZEN2_61, name='bad')
    with pytest.raises(fix.FixOptionError, match='hyperv must be one of'):
        fix.fix_domain(read('clean_linux.xml'), ZEN2_61, {'hyperv': 'sometimes'})
    with pytest.raises(fix.FixOptionError, match='unknown option'):
        fix.fix_domain(read('clean_linux.xml'), ZEN2_61, {'colour': 'blue'})


def valid_for_libvirt(xml, tmp_path):
    """virt-xml-validate against the installed libvirt schema, where it is installed."""
    if not shutil.which('virt-xml-validate'):
        return True
    path = tmp_path / 'domain.xml'
    path.write_text(xml)
    proc = subprocess.run(['virt-xml-validate', str(path), 'domain'], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    return True


def cpu_of(xml):
    return ET.fromstring(xml).find('cpu')


def test_non_kvm_domain_never_gets_a_host_cpu(tmp_path):
    """type='qemu' (TCG): audited as usual, features fixed, but the CPU keeps QEMU's default model."""
    # on 5.4 nothing needs a <cpu> (KVM < 5.6 hides x2apic itself): none is created
    untouched = fix.fix_domain(read('not_kvm_cpu_missing.xml'), OLD_54, name='tcg')
    assert cpu_of(untouched['xml']) is None and 'host-passthrough' not in untouched['xml']
    for host in (ZEN2_61, dict(ZEN2_61, nested=None), OLD_518):
        result = fix.fix_domain(read('not_kvm_cpu_missing.xml'), host, name='tcg')
        cpu = cpu_of(result['xml'])
        assert cpu.get('mode') == 'custom' and cpu.findtext('model') == 'qemu64'
        assert cpu.find('model').get('fallback') == 'forbid'
        assert "host-passthrough" not in result['xml'] and 'host-model' not in result['xml']
        assert cpu.find("feature[@name='svm']") is None, 'qemu64 has svm=off under KVM: nothing to disable'
        assert [n for n in result['notes'] if n.startswith('cpu_mode: kept')], result['notes']
        assert 'cpu_mode_not_host' in ids(result['findings_after'])
        assert valid_for_libvirt(result['xml'], tmp_path)
        assert fix.fix_domain(result['xml'], host, name='tcg')['changed'] is False
    assert cpu_of(fix.fix_domain(read('not_kvm_cpu_missing.xml'), ZEN2_61)['xml']).find(
        "feature[@name='x2apic']").get('policy') == 'disable'
    named = read('cpu_mode_custom.xml').replace("<domain type='kvm'>", "<domain type='qemu'>")
    result = fix.fix_domain(named, ZEN2_61)
    assert result['changed'] is False and result['xml'] == named
    assert cpu_of(result['xml']).get('mode') == 'custom' and cpu_of(result['xml']).findtext('model') == 'EPYC-Rome'


def test_kvm_domain_with_cpu_mode_keep_gets_the_default_model_not_host_passthrough(tmp_path):
    result = fix.fix_domain(read('cpu_missing.xml'), ZEN2_61, {'cpu_mode': 'keep'})
    cpu = cpu_of(result['xml'])
    assert cpu.get('mode') == 'custom' and cpu.findtext('model') == 'qemu64'
    assert [f.get('name') for f in cpu.findall('feature')] == ['x2apic'], 'qemu64 carries no svm under KVM'
    assert valid_for_libvirt(result['xml'], tmp_path)
    auto = fix.fix_domain(read('cpu_missing.xml'), ZEN2_61)
    assert cpu_of(auto['xml']).get('mode') == 'host-passthrough', 'KVM domains still get the host CPU'
    assert ids(auto['findings_after'], 'inhibit') == [] and ids(auto['findings_after'], 'warning') == []
    assert ids(auto['findings_after'], 'info') == ['svm_exposed'], 'host-passthrough brings svm, no inhibit on 6.1'


def test_non_amd_host_changes_nothing_and_keeps_x2apic(cpuinfo):
    intel = {'kernel': '6.1.0-26-amd64', 'avic': False, 'x2avic': False,
             'cpu': cpu_rules.classify_cpu(cpuinfo('intel_xeon_gold_6338.txt'))}
    for name in ('seed_windows_before.xml', 'x2apic_exposed.xml', 'cpu_missing.xml'):
        xml = read(name)
        result = fix.fix_domain(xml, intel, {'x2apic': 'disable'}, caps=HV_AVIC, name=name)
        assert result['changed'] is False and result['xml'] == xml and result['changes'] == []
        assert ids(result['findings_before']) == ['not_amd'] == ids(result['findings_after'])
        assert 'not AMD/Hygon' in result['notes'][0]


def test_more_than_255_vcpus_keep_x2apic_with_a_note():
    xml = read('too_many_vcpus.xml')
    for opts in ({}, {'x2apic': 'disable'}):
        result = fix.fix_domain(xml, ZEN2_61, opts, name='big')
        assert cpu_of(result['xml']).find("feature[@name='x2apic']") is None, opts
        assert ids(result['findings_after'], 'inhibit') == ['too_many_vcpus']
        assert [n for n in result['notes'] if 'x2apic: kept' in n and '288 vCPUs' in n], result['notes']
    on_x2avic = fix.fix_domain(xml, ZEN4_618, name='big')
    assert on_x2avic['changed'] is False and on_x2avic['notes'] == []


def test_hyperv_passthrough_is_left_with_a_note():
    old = fix.fix_domain(read('hyperv_passthrough.xml'), dict(ZEN2_61, kernel='5.14.21'), caps=HV_AVIC)
    assert old['changed'] is False
    assert ids(old['findings_after'], 'inhibit') == ['hyperv_passthrough']
    assert [n for n in old['notes'] if "mode='passthrough' is left" in n and 'older than 5.15' in n]
    unknown = fix.fix_domain(read('hyperv_passthrough.xml'), ZEN2_61, caps=HV_AVIC)
    assert ids(unknown['findings_after'], 'warning') == ['hyperv_passthrough']
    assert [n for n in unknown['notes'] if "mode='passthrough' is left" in n]


def test_hyperv_passthrough_takes_qemu_from_virsh_version():
    """QEMU 7.2 on 6.1: passthrough includes hv-avic, so it is no inhibit and needs no note."""
    caps = libvirt_versions.hv_avic_caps(libvirt_versions.parse_virsh_version(VIRSH_VERSION['debian12']))
    result = fix.fix_domain(read('hyperv_passthrough.xml'), ZEN2_61, caps=caps)
    assert [f['severity'] for f in result['findings_after'] if f['id'] == 'hyperv_passthrough'] == ['info']
    assert result['notes'] == [] and result['changed'] is False
    old_qemu = dict(caps, qemu='6.1.0')
    assert ids(fix.fix_domain(read('hyperv_passthrough.xml'), ZEN2_61, caps=old_qemu)['findings_after'],
               'inhibit') == ['hyperv_passthrough']


VIRSH_VERSION = {
    # virsh version --daemon, Debian 12 (bookworm)
    'debian12': 'Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\n'
                'Using API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.0\nRunning against daemon: 9.0.0\n',
    # Ubuntu 22.04 (jammy)
    'libvirt8': 'Compiled against library: libvirt 8.0.0\nUsing library: libvirt 8.0.0\n'
                'Using API: QEMU 8.0.0\nRunning hypervisor: QEMU 6.2.0\nRunning against daemon: 8.0.0\n',
}


def test_explicit_hyperv_avic_on_an_old_libvirt_is_refused_and_auto_falls_back():
    caps = libvirt_versions.hv_avic_caps(libvirt_versions.parse_virsh_version(VIRSH_VERSION['libvirt8']))
    assert caps['hv_avic'] is False
    xml = read('seed_windows_before.xml')
    with pytest.raises(fix.HvAvicUnsupported) as err:
        fix.fix_domain(xml, ZEN2_61, {'hyperv': 'avic'}, caps=caps, name='win10')
    text = str(err.value)
    assert text.startswith('hyperv: avic') and 'libvirt 8.0.0' in text and 'QEMU 6.2.0' in text
    assert 'nothing was changed' in text
    auto = fix.fix_domain(xml, ZEN2_61, {'hyperv': 'auto'}, caps=caps, name='win10')
    hv = ET.fromstring(auto['xml']).find('features/hyperv')
    assert hv.find('synic') is None and hv.find('stimer') is None and hv.find('avic') is None
    assert [n for n in auto['notes'] if 'libvirt 8.0.0 is older than 8.10' in n]
    # no SynIC to keep: hyperv=avic has nothing to do, so it does not fail
    assert fix.fix_domain(read('clean_windows.xml'), ZEN2_61, {'hyperv': 'avic'}, caps=caps)['changed'] is False
    good = libvirt_versions.hv_avic_caps(libvirt_versions.parse_virsh_version(VIRSH_VERSION['debian12']))
    done = fix.fix_domain(xml, ZEN2_61, {'hyperv': 'avic'}, caps=good, name='win10')
    assert ET.fromstring(done['xml']).find('features/hyperv/avic').get('state') == 'on'


def test_normalise_xml_makes_the_diff_show_only_the_fix():
    import difflib
    xml = read('seed_windows_before.xml')
    result = fix.fix_domain(xml, ZEN2_61, caps=HV_AVIC, name='win10')
    before = fix.normalise_xml(xml, 'win10')
    assert ET.canonicalize(before, strip_text=True) == ET.canonicalize(xml, strip_text=True)
    changed = [ln for ln in difflib.unified_diff(before.splitlines(), result['xml'].splitlines(), lineterm='', n=0)
               if ln[:1] in '+-' and ln[:3] not in ('+++', '---')]
    assert changed and len(changed) <= 2 * len(result['changes']) + 2, changed
    assert all(any(word in ln for word in ('avic', 'vapic', 'pit', 'x2apic', 'svm', 'invtsc')) for ln in changed), changed
    assert fix.normalise_xml(before) == before


def test_hyperv_passthrough_with_hv_avic_needs_nothing():
    with_avic = read('hyperv_passthrough.xml').replace(
        "<hyperv mode='passthrough'/>", "<hyperv mode='passthrough'>\n      <avic state='on'/>\n    </hyperv>")
    kept = fix.fix_domain(with_avic, ZEN2_61, caps=HV_AVIC)
    assert kept['changed'] is False and kept['notes'] == [] and ids(kept['findings_after'], 'inhibit') == []


OLD_514 = {'kernel': '5.14.21', 'avic': True, 'x2avic': False, 'nested': False}


def test_before_5_15_synic_is_removed_even_with_hv_avic():
    xml = read('clean_windows_hv_avic.xml')
    result = fix.fix_domain(xml, OLD_514, caps=HV_AVIC, name='win')
    hv = ET.fromstring(result['xml']).find('features/hyperv')
    assert hv.find('synic') is None and hv.find('stimer') is None
    assert [n for n in result['notes'] if 'older than 5.15' in n], result['notes']
    assert ids(result['findings_after'], 'inhibit') == []
    with pytest.raises(fix.HvAvicUnsupported) as err:
        fix.fix_domain(read('seed_windows_before.xml'), OLD_514, {'hyperv': 'avic'}, caps=HV_AVIC)
    assert 'before 5.15' in str(err.value) and 'nothing was changed' in str(err.value)
    on_515 = fix.fix_domain(xml, dict(OLD_514, kernel='5.15.0'), caps=HV_AVIC)
    assert on_515['changed'] is False and on_515['xml'] == xml


def test_svm_auto_keeps_what_does_not_inhibit():
    """From 5.19 (and with nested=0) svm is no inhibit: auto keeps it, an explicit one too."""
    required = read('svm_required_named_model.xml')
    for host in (dict(ZEN2_61, nested=True), ZEN2_61, dict(ZEN4_618, nested=None)):
        for name in ('svm_exposed.xml', 'svm_required_named_model.xml'):
            result = fix.fix_domain(read(name), host, name=name)
            assert ET.fromstring(result['xml']).find("cpu/feature[@name='svm'][@policy='disable']") is None, \
                (name, host)
            assert [n for n in result['notes'] if n.startswith('svm: kept')], result['notes']
    forced = fix.fix_domain(required, ZEN2_61, {'svm': 'disable'})
    assert cpu_of(forced['xml']).find("feature[@name='svm']").get('policy') == 'disable'


def test_svm_auto_disables_where_it_inhibits_and_says_what_is_lost():
    required = read('svm_required_named_model.xml')
    result = fix.fix_domain(required, OLD_518, name='wsl')
    assert cpu_of(result['xml']).find("feature[@name='svm']").get('policy') == 'disable'
    assert [n for n in result['notes'] if 'loses nested virtualisation' in n], result['notes']
    unknown = dict(OLD_518, nested=None)
    implicit = fix.fix_domain(read('svm_exposed.xml'), unknown)
    assert cpu_of(implicit['xml']).find("feature[@name='svm']").get('policy') == 'disable'
    explicit = fix.fix_domain(required, unknown)
    assert cpu_of(explicit['xml']).find("feature[@name='svm']").get('policy') == 'require'
    assert [n for n in explicit['notes'] if n.startswith('svm: kept, the guest asks for it')]


def test_x2apic_is_kept_before_5_6_and_for_apic_ids_above_254():
    old = fix.fix_domain(read('x2apic_exposed.xml'), dict(OLD_54, kernel='5.5.19'))
    assert cpu_of(old['xml']).find("feature[@name='x2apic']") is None, 'KVM < 5.6 hides x2apic itself'
    on_56 = fix.fix_domain(read('x2apic_exposed.xml'), dict(OLD_54, kernel='5.6.0'))
    assert cpu_of(on_56['xml']).find("feature[@name='x2apic']").get('policy') == 'disable'
    big = fix.fix_domain(read('topology_3_sockets.xml'), ZEN2_61, name='big')
    assert cpu_of(big['xml']).find("feature[@name='x2apic']") is None, '216 vCPUs, APIC IDs up to 327'
    assert [n for n in big['notes'] if 'APIC IDs up to 327' in n], big['notes']
    assert ids(big['findings_after'], 'inhibit') == ['too_many_vcpus']


def test_split_irqchip_pit_is_left_alone():
    xml = read('pit_split_irqchip.xml')
    result = fix.fix_domain(xml, ZEN2_61)
    assert result['changed'] is False and result['xml'] == xml


def test_the_fix_never_requires_invtsc_on_a_host_without_it():
    with open(os.path.join(REPO, 'tests', 'fixtures', 'domains', 'invtsc_missing.xml')) as handle:
        xml = handle.read()
    given = fix.fix_domain(xml, dict(ZEN2_61, invtsc=True), caps=HV_AVIC, name='win')
    assert "<feature policy='require' name='invtsc'/>" in ' '.join(given['changes'])
    lacking = fix.fix_domain(xml, dict(ZEN2_61, invtsc=False), caps=HV_AVIC, name='win')
    assert 'invtsc' not in ' '.join(lacking['changes'])
    assert 'invtsc_missing' not in [f['id'] for f in lacking['findings_after']]
