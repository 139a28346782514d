# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt domain XML into the guest model the rules read (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import xml.etree.ElementTree as ET

from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules.topology import max_apic_id


class DomainXMLError(ValueError):
    """Domain XML that cannot be parsed or is not a libvirt domain."""


def _label(text, name=None):
    if name:
        return 'domain %r' % (name,)
    snippet = ' '.join(str(text)[:60].split())
    return 'domain XML starting %r' % (snippet,)


def parse_domain(xml_text, name=None):
    """Parse domain XML text into an Element; raises DomainXMLError naming the domain."""
    if isinstance(xml_text, ET.Element):
        return xml_text
    if isinstance(xml_text, bytes):
        xml_text = xml_text.decode('utf-8', 'replace')
    if not isinstance(xml_text, str) or not xml_text.strip():
        raise DomainXMLError('%s is empty or not text' % _label(xml_text or '', name))
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise DomainXMLError('%s is not well-formed XML: %s' % (_label(xml_text, name), exc))
    if root.tag != 'domain':
        raise DomainXMLError('%s is not a libvirt domain: root element is <%s>'
                             % (_label(xml_text, name), root.tag))
    return root


def parse_sev_policy(text):
    """libvirt's <launchSecurity><policy> as an int: always hexadecimal, with or without 0x
    (0x0007, 0007, 7); None when it is not hex."""
    text = (text or '').strip()
    if not text:
        return 0
    try:
        return int(text, 16)
    except ValueError:
        return None


def domain_summary(root):
    """The facts of a domain that the rules look at, as plain data."""
    cpu = root.find('cpu')
    features = {}
    cpu_mode = None
    topology = None
    if cpu is not None:
        cpu_mode = cpu.get('mode', 'custom')
        for feat in cpu.findall('feature'):
            features[feat.get('name')] = feat.get('policy', 'require')
        topo = cpu.find('topology')
        if topo is not None:
            topology = {}
            for key in ('sockets', 'dies', 'clusters', 'cores', 'threads'):
                try:
                    topology[key] = max(int(topo.get(key, '1')), 1)
                except ValueError:
                    topology[key] = 1
    hyperv = root.find('features/hyperv')
    hv = None
    if hyperv is not None:
        hv = {'mode': hyperv.get('mode', 'custom')}
        for child in hyperv:
            hv[child.tag] = parse_bool(child.get('state', 'on'), False)
    timers = {}
    for timer in root.findall('clock/timer'):
        timers[timer.get('name')] = dict(timer.attrib)
    ioapic = root.find('features/ioapic')
    vcpu = root.find('vcpu')
    try:
        vcpus = int(vcpu.text.strip()) if vcpu is not None and vcpu.text else 1
    except ValueError:
        vcpus = 1
    launch = root.find('launchSecurity')
    sev = None
    if launch is not None:
        sev = {'type': launch.get('type'), 'policy': parse_sev_policy(launch.findtext('policy'))}
    summary = {
        'name': root.findtext('name'),
        'type': root.get('type'),
        'cpu_mode': cpu_mode,
        'cpu_features': features,
        'hyperv': hv,
        'timers': timers,
        'ioapic_driver': ioapic.get('driver') if ioapic is not None else None,
        'vcpus': vcpus,
        'topology': topology,
        'sev': sev,
    }
    summary['max_apic_id'] = max_apic_id(summary)
    return summary


def audit_domain(xml_text, host, name=None):
    """Findings for one domain XML on a host; raises DomainXMLError / HostFactsError.

    On a host whose CPU is not AMD/Hygon the only finding is ``not_amd`` (info).
    """
    return domain_rules.audit_summary(domain_summary(parse_domain(xml_text, name)), host)
