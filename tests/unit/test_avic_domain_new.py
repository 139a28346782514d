# -*- coding: utf-8 -*-
"""New-guest XML: profiles, escaping, and bad specs."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import xml.etree.ElementTree as ET

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.filter.__roles import domain_xml, guest_report
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_fix
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_new as new

HOST = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False, 'nested': False}


def test_windows_profile_then_fixed_for_the_host_has_no_inhibit():
    xml = new.build({'name': 'win11', 'profile': 'windows', 'vcpus': 4, 'memory_mib': 8192,
                     'cpu_pinning': ['2', '3', '4', '5'], 'hostdevs': ['0b:00.0', '0000:0b:00.1'],
                     'disks': [{'path': '/dev/disk/by-id/nvme-x'}], 'bridge': 'br0'})
    root = ET.fromstring(xml)
    assert root.get('type') == 'kvm' and root.findtext('vcpu') == '4'
    assert root.find('os/loader').text.endswith('OVMF_CODE_4M.fd')
    assert [p.get('cpuset') for p in root.findall('cputune/vcpupin')] == ['2', '3', '4', '5']
    assert root.find('devices/disk').get('type') == 'block'
    assert [a.get('function') for a in root.findall('devices/hostdev/source/address')] == ['0x0', '0x1']
    fixed = domain_fix.fix_domain(xml, HOST, caps={'hv_avic': True}, name='win11')
    assert not [f for f in fixed['findings_after'] if f['severity'] == 'inhibit']
    assert ET.fromstring(fixed['xml']).find('features/hyperv/avic').get('state') == 'on'


def test_special_characters_are_escaped_not_injected():
    name = "evil<name>&amp;<devices><hostdev>'\"x"
    xml = new.build({'name': name, 'disks': [{'path': "/img/a&b<c>'\".qcow2"}]})
    root = ET.fromstring(xml)
    assert root.findtext('name') == name
    assert root.find('devices/disk/source').get('file') == "/img/a&b<c>'\".qcow2"
    assert root.find('devices/disk/driver').get('type') == 'qcow2'
    assert len(root.findall('devices/hostdev')) == 0 and len(root.findall('name')) == 1


@pytest.mark.parametrize('spec, message', [
    ({}, 'needs a name'),
    ({'name': 'a/b'}, 'needs a name'),
    ({'name': 'x', 'profile': 'bsd'}, 'profile of guest'),
    ({'name': 'x', 'vcpus': 'many'}, 'vcpus of guest'),
    ({'name': 'x', 'vcpus': 0}, 'between 1 and'),
    ({'name': 'x', 'firmware': 'uefi'}, 'bios or ovmf'),
    ({'name': 'x', 'disks': ['relative.qcow2']}, 'absolute path'),
    ({'name': 'x', 'hostdevs': ['0b:00']}, 'PCI address'),
    ({'name': 'x', 'vcpus': 2, 'cpu_pinning': ['1']}, 'lists 1 host CPUs for 2'),
    ({'name': 'x', 'domain_type': 'xen'}, 'kvm or qemu'),
])
def test_bad_specs_name_the_field(spec, message):
    with pytest.raises(new.SpecError, match=message):
        new.build(spec)
    with pytest.raises(AnsibleFilterError, match='avic_guest_new'):
        domain_xml(spec)


def test_guest_report_states():
    inhibit = {'id': 'sev_guest', 'severity': 'inhibit', 'message': 'SEV-SNP guest'}
    results = [
        {'item': {'name': 'a'}, 'changed': True, 'findings_before': [{'id': 'pit_reinject', 'severity': 'inhibit'}],
         'findings_after': [], 'restart_required': False, 'backup': '/b/a.xml'},
        {'item': {'name': 'b'}, 'changed': True, 'active': True, 'restart_required': True,
         'findings_before': [{'id': 'pit_reinject', 'severity': 'inhibit'}], 'findings_after': []},
        {'item': {'name': 'c'}, 'changed': False, 'findings_before': [inhibit], 'findings_after': [inhibit]},
        {'item': {'name': 'd'}, 'failed': True, 'msg': 'domain d is not defined'},
        {'item': {'name': 'e'}, 'skipped': True},
    ]
    report = guest_report(results)
    assert [(g['name'], g['state']) for g in report] == [
        ('a', 'ready'), ('b', 'restart_required'), ('c', 'inhibited'), ('d', 'error')]
    assert report[0]['line'] == 'a: ready (fixed pit_reinject)' and report[0]['backup'] == '/b/a.xml'
    assert report[2]['line'] == 'c: inhibited; still inhibited by sev_guest'
    with pytest.raises(AnsibleFilterError, match='results list'):
        guest_report({'results': []})


@pytest.mark.parametrize('index, dev', [(0, 'vda'), (25, 'vdz'), (26, 'vdaa'), (27, 'vdab'), (51, 'vdaz'),
                                        (52, 'vdba'), (701, 'vdzz'), (702, 'vdaaa')])
def test_disk_targets_go_on_after_z(index, dev):
    assert new.disk_target('vd', index) == dev


def test_thirty_disks_get_distinct_targets_per_bus():
    disks = ['/var/lib/libvirt/images/d%d.qcow2' % i for i in range(30)]
    disks.insert(3, {'path': '/isos/install.iso', 'device': 'cdrom'})
    root = ET.fromstring(new.build({'name': 'many', 'disks': disks}))
    targets = [t.get('dev') for t in root.findall('devices/disk/target')]
    assert len(targets) == len(set(targets)) == 31
    assert targets[:3] == ['vda', 'vdb', 'vdc'] and targets[3] == 'sda'
    assert targets[26:] == ['vdz', 'vdaa', 'vdab', 'vdac', 'vdad']


def test_a_qemu_guest_gets_the_default_model_not_the_host_cpu():
    xml = new.build({'name': 'tcg', 'domain_type': 'qemu'})
    cpu = ET.fromstring(xml).find('cpu')
    assert cpu.get('mode') == 'custom' and cpu.findtext('model') == 'qemu64'
    fixed = domain_fix.fix_domain(xml, HOST, name='tcg')
    cpu = ET.fromstring(fixed['xml']).find('cpu')
    assert cpu.get('mode') == 'custom' and cpu.findtext('model') == 'qemu64'
    assert cpu.find("feature[@name='x2apic']").get('policy') == 'disable'
    assert ET.fromstring(new.build({'name': 'kvm'})).find('cpu').get('mode') == 'host-passthrough'
