# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edits of a libvirt domain XML that keep the rest of the document as it was (stdlib only).

parse() keeps comments and namespace prefixes, serialise() writes the tree back; the other
functions find or create one element (a child, <cpu> and its features, a <clock> timer, a Hyper-V
enlightenment) with the indentation of its siblings, so that a diff of the domain shows only what
changed. What to change is libvirt/domain_fix.py's decision.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import re
import xml.etree.ElementTree as ET

from ansible_collections.vfio.avic.plugins.module_utils.libvirt.domain_xml import DomainXMLError

_NS_DECL = re.compile(r'xmlns:([A-Za-z_][\w.-]*)\s*=\s*["\']([^"\']+)["\']')
# QEMU's default CPU model when a domain has no <cpu> element
DEFAULT_MODELS = {'i686': 'qemu32'}
DEFAULT_MODEL = 'qemu64'


def parse(xml_text, name):
    """The root <domain> of ``xml_text``, its comments kept and its namespace prefixes registered
    for serialise(); raises DomainXMLError naming the domain ``name``."""
    for prefix, uri in _NS_DECL.findall(xml_text):
        ET.register_namespace(prefix, uri)
    try:
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    except TypeError:  # Python < 3.8 drops comments
        parser = ET.XMLParser()
    try:
        root = ET.fromstring(xml_text, parser=parser)
    except ET.ParseError as exc:
        raise DomainXMLError('domain %r is not well-formed XML: %s' % (name, exc))
    if root.tag != 'domain':
        raise DomainXMLError('domain %r is not a libvirt domain: root element is <%s>'
                             % (name, root.tag))
    return root


def serialise(root):
    """The text of the tree under ``root``, without an XML declaration, ending in a newline."""
    out = io.BytesIO()
    ET.ElementTree(root).write(out, encoding='utf-8', xml_declaration=False)
    return out.getvalue().decode('utf-8') + '\n'


def child_element(parent, tag, attrib=None, before=None):
    """The first ``tag`` child of ``parent``, created (with ``attrib``) when missing."""
    found = parent.find(tag)
    if found is not None:
        return found
    element = ET.Element(tag, attrib or {})
    index = len(parent)
    if before:
        for i, child in enumerate(parent):
            if child.tag in before:
                index = i
                break
    if len(parent) == 0:
        parent.text = (parent.text or '\n') + '  '
        element.tail = '\n'
    elif index < len(parent):
        # between siblings: same indentation as the element it goes before
        element.tail = parent[index - 1].tail if index else parent.text
    else:
        # last: takes the closing indentation, the previous last gets a sibling's
        element.tail = parent[-1].tail
        parent[-1].tail = parent[-2].tail if len(parent) > 1 else parent.text
    parent.insert(index, element)
    return element


def append_last(parent, element, close, inner):
    """Append ``element`` as the last child of ``parent``, indented as its siblings are: it takes
    the closing indentation (``close`` where ``parent`` was empty), the previous last child a
    sibling's (the first child's, else ``inner``)."""
    element.tail = parent[-1].tail if len(parent) else close
    if len(parent):
        parent[-1].tail = parent[0].tail or inner
    else:
        parent.text = inner
    parent.append(element)


def cpu_element(root, host_cpu=True):
    """The domain's <cpu>, created when missing: host-passthrough where ``host_cpu`` allows it,
    else mode='custom' with QEMU's default model (what a domain without <cpu> runs)."""
    before = ('clock', 'on_poweroff', 'on_reboot', 'on_crash', 'pm', 'devices')
    if host_cpu:
        return child_element(root, 'cpu', {'mode': 'host-passthrough', 'check': 'none', 'migratable': 'on'},
                             before=before)
    return child_element(root, 'cpu', {'mode': 'custom', 'match': 'exact', 'check': 'none'}, before=before)


def _default_model(root, cpu):
    """libvirt refuses CPU features without a model in mode='custom': give such a <cpu> QEMU's
    default model, which is what it runs today."""
    if cpu.get('mode', 'custom') != 'custom' or cpu.find('model') is not None:
        return
    os_type = root.find('os/type')
    model = ET.Element('model', {'fallback': 'forbid'})
    model.text = DEFAULT_MODELS.get(os_type.get('arch') if os_type is not None else None, DEFAULT_MODEL)
    if len(cpu):
        model.tail = cpu.text if cpu.text and not cpu.text.strip() else '\n    '
    else:
        cpu.text = '\n    '
        model.tail = '\n  '
    cpu.insert(0, model)


def cpu_feature(root, name, policy, host_cpu=True):
    """Give the CPU feature ``name`` the ``policy`` (the <cpu> created as cpu_element() does);
    True when that changed the domain."""
    cpu = cpu_element(root, host_cpu)
    _default_model(root, cpu)
    for feat in cpu.findall('feature'):
        if feat.get('name') == name:
            if feat.get('policy') == policy:
                return False
            feat.set('policy', policy)
            return True
    element = ET.Element('feature', {'policy': policy, 'name': name})
    element.tail = cpu[-1].tail if len(cpu) else '\n  '
    if len(cpu):
        indent = cpu.text if cpu.text and not cpu.text.strip() else None
        cpu[-1].tail = indent or cpu[0].tail or '\n    '
    else:
        cpu.text = '\n    '
    cpu.append(element)
    return True


def _clock(root):
    return child_element(root, 'clock', {'offset': 'utc'},
                         before=('on_poweroff', 'on_reboot', 'on_crash', 'pm', 'devices'))


def clock_timer(root, name):
    """The <timer name=``name``> of the domain's <clock>, both created when missing."""
    clock = _clock(root)
    for timer in clock.findall('timer'):
        if timer.get('name') == name:
            return timer
    timer = ET.Element('timer', {'name': name})
    append_last(clock, timer, '\n  ', '\n    ')
    return timer


def hv_set(hyperv, tag, state):
    """Set the Hyper-V enlightenment ``tag`` of ``hyperv`` to ``state`` (added when missing);
    True when that changed the domain."""
    element = hyperv.find(tag)
    if element is None:
        element = ET.Element(tag)
        append_last(hyperv, element, '\n    ', '\n      ')
    if element.get('state') == state:
        return False
    element.set('state', state)
    return True


def hv_remove(hyperv, tag):
    """Remove the Hyper-V enlightenment ``tag`` from ``hyperv``; True when it was there."""
    element = hyperv.find(tag)
    if element is None:
        return False
    hyperv.remove(element)
    return True
