# -*- coding: utf-8 -*-
"""The XML transformation of avic_domain on the fixture domains."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import avic_domain
from ansible_collections.vfio.avic.plugins.module_utils import avic_domain_fix as fix

from conftest import REPO

DOMAINS = os.path.join(REPO, 'tests', 'fixtures', 'domains')
ZEN2_61 = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False, 'nested': False}
ZEN4_618 = {'kernel': '6.18.2-arch2-1', 'avic': True, 'x2avic': True, 'nested': False}
OLD_54 = {'kernel': '5.4.0-150-generic', 'avic': True, 'x2avic': False, 'nested': True}
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
    assert 'libvirt 8.0' in result['notes'][0]
    assert 'hyperv_synic' not in ids(result['findings_after'])


def test_x2avic_host_keeps_x2apic_and_nested_keeps_svm():
    result = fix.fix_domain(read('x2apic_exposed.xml'), ZEN4_618, name='x')
    assert 'x2apic_exposed' not in ids(result['findings_before'])
    assert ET.fromstring(result['xml']).find("cpu/feature[@name='x2apic']") is None
    nested = dict(ZEN2_61, nested=True)
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
    for host in (ZEN2_61, ZEN4_618, OLD_54):
        result = fix.fix_domain(read(name), host, caps=HV_AVIC, name=name)
        left = set(ids(result['findings_after']))
        assert left <= UNFIXABLE, (name, host, left)
        again = fix.fix_domain(result['xml'], host, caps=HV_AVIC, name=name)
        assert again['changed'] is False, (name, again['changes'])


def test_clean_domains_are_left_byte_for_byte():
    for name in ('clean_linux.xml', 'clean_windows_hv_avic.xml'):
        xml = read(name)
        result = fix.fix_domain(xml, ZEN4_618, caps=HV_AVIC, name=name)
        assert result['changed'] is False and result['xml'] == xml


def test_bad_input_is_named():
    with pytest.raises(avic_domain.DomainXMLError, match='not well-formed'):
        fix.fix_domain(read('malformed.xml'), ZEN2_61, name='bad')
    with pytest.raises(fix.FixOptionError, match='hyperv must be one of'):
        fix.fix_domain(read('clean_linux.xml'), ZEN2_61, {'hyperv': 'sometimes'})
    with pytest.raises(fix.FixOptionError, match='unknown option'):
        fix.fix_domain(read('clean_linux.xml'), ZEN2_61, {'colour': 'blue'})
