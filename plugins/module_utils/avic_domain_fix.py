# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a libvirt domain XML to AVIC-friendly settings (stdlib only).

fix_domain() audits the XML with avic_domain.audit_domain() and repairs what each finding
names, as the options choose; everything else of the document (devices, metadata, the
qemu:commandline and other namespaces, comments, element and attribute order) is kept.
What cannot be fixed in the XML (too many vCPUs, SEV guests, a non-KVM domain) stays in
the findings after the fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import re
import xml.etree.ElementTree as ET

from ansible_collections.vfio.avic.plugins.module_utils import avic_domain

CHOICES = {
    'x2apic': ('auto', 'disable', 'keep'),
    'svm': ('auto', 'disable', 'keep'),
    'pit': ('auto', 'keep'),
    'hyperv': ('auto', 'avic', 'remove', 'keep'),
    'vapic': ('auto', 'disable', 'keep'),
    'hypervclock': ('auto', 'keep'),
    'invtsc': ('auto', 'keep'),
    'ioapic': ('auto', 'qemu', 'keep'),
    'cpu_mode': ('auto', 'keep'),
}
DEFAULTS = dict((key, 'auto') for key in CHOICES)
_NS_DECL = re.compile(r'xmlns:([A-Za-z_][\w.-]*)\s*=\s*["\']([^"\']+)["\']')


class FixOptionError(ValueError):
    """An option value the fixer does not know (named in the message)."""


def check_options(options):
    """Complete ``options`` with defaults; raise FixOptionError for unknown keys or values."""
    merged = dict(DEFAULTS)
    for key, value in (options or {}).items():
        if value is None:
            continue
        if key not in CHOICES:
            raise FixOptionError('unknown option %r (known: %s)' % (key, ', '.join(sorted(CHOICES))))
        if value not in CHOICES[key]:
            raise FixOptionError('%s must be one of %s, got %r' % (key, ', '.join(CHOICES[key]), value))
        merged[key] = value
    return merged


def _parse(xml_text, name):
    for prefix, uri in _NS_DECL.findall(xml_text):
        ET.register_namespace(prefix, uri)
    try:
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    except TypeError:  # Python < 3.8 drops comments
        parser = ET.XMLParser()
    try:
        root = ET.fromstring(xml_text, parser=parser)
    except ET.ParseError as exc:
        raise avic_domain.DomainXMLError('domain %r is not well-formed XML: %s' % (name, exc))
    if root.tag != 'domain':
        raise avic_domain.DomainXMLError('domain %r is not a libvirt domain: root element is <%s>'
                                         % (name, root.tag))
    return root


def _serialise(root):
    out = io.BytesIO()
    ET.ElementTree(root).write(out, encoding='utf-8', xml_declaration=False)
    return out.getvalue().decode('utf-8') + '\n'


def _child(parent, tag, attrib=None, before=None):
    """The first ``tag`` child of ``parent``, created (with ``attrib``) when missing."""
    found = parent.find(tag)
    if found is not None:
        return found
    element = ET.Element(tag, attrib or {})
    element.tail = parent.text if len(parent) == 0 else parent[-1].tail
    index = len(parent)
    if before:
        for i, child in enumerate(parent):
            if child.tag in before:
                index = i
                break
    if len(parent) == 0:
        parent.text = (parent.text or '\n') + '  '
        element.tail = '\n'
    parent.insert(index, element)
    return element


def _cpu(root):
    return _child(root, 'cpu', {'mode': 'host-passthrough', 'check': 'none', 'migratable': 'on'},
                  before=('clock', 'on_poweroff', 'on_reboot', 'on_crash', 'pm', 'devices'))


def _feature(root, name, policy):
    cpu = _cpu(root)
    for feat in cpu.findall('feature'):
        if feat.get('name') == name:
            if feat.get('policy') == policy:
                return False
            feat.set('policy', policy)
            return True
    element = ET.Element('feature', {'policy': policy, 'name': name})
    element.tail = cpu[-1].tail if len(cpu) else '\n  '
    if len(cpu):
        cpu[-1].tail = cpu[0].tail if cpu[0].tail else '\n    '
    else:
        cpu.text = '\n    '
    cpu.append(element)
    return True


def _clock(root):
    return _child(root, 'clock', {'offset': 'utc'},
                  before=('on_poweroff', 'on_reboot', 'on_crash', 'pm', 'devices'))


def _timer(root, name):
    clock = _clock(root)
    for timer in clock.findall('timer'):
        if timer.get('name') == name:
            return timer
    timer = ET.Element('timer', {'name': name})
    timer.tail = clock[-1].tail if len(clock) else '\n  '
    if len(clock):
        clock[-1].tail = clock[0].tail or '\n    '
    else:
        clock.text = '\n    '
    clock.append(timer)
    return timer


def _hv_set(hyperv, tag, state):
    element = hyperv.find(tag)
    if element is None:
        element = ET.Element(tag)
        element.tail = hyperv[-1].tail if len(hyperv) else '\n    '
        if len(hyperv):
            hyperv[-1].tail = hyperv[0].tail or '\n      '
        else:
            hyperv.text = '\n      '
        hyperv.append(element)
    if element.get('state') == state:
        return False
    element.set('state', state)
    return True


def _hv_remove(hyperv, tag):
    element = hyperv.find(tag)
    if element is None:
        return False
    hyperv.remove(element)
    return True


def _fix_hyperv(root, ids, opts, caps, changes, notes):
    hyperv = root.find('features/hyperv')
    if hyperv is None:
        return
    strategy = opts['hyperv']
    if strategy == 'auto':
        strategy = 'avic' if caps.get('hv_avic') else 'remove'
        if not caps.get('hv_avic') and ({'hyperv_synic', 'hyperv_stimer'} & ids):
            notes.append('hyperv: <avic state="on"/> needs libvirt >= 8.10 and a QEMU with hv-avic, '
                         'which this host lacks (%s): SynIC and stimer are removed instead'
                         % (caps.get('hv_avic_reason') or 'not detected'))
    if {'hyperv_synic', 'hyperv_stimer'} & ids:
        if strategy == 'avic':
            if _hv_set(hyperv, 'avic', 'on'):
                changes.append("hyperv: <avic state='on'/> added, SynIC and stimer kept")
        elif strategy == 'remove':
            removed = [t for t in ('stimer', 'synic') if _hv_remove(hyperv, t)]
            if removed:
                changes.append('hyperv: %s removed' % ' and '.join(removed))
    if 'hyperv_vapic' in ids and opts['vapic'] in ('auto', 'disable'):
        if _hv_set(hyperv, 'vapic', 'off'):
            changes.append("hyperv: <vapic state='off'/>")
    if 'hypervclock_missing' in ids and opts['hypervclock'] == 'auto':
        timer = _timer(root, 'hypervclock')
        timer.set('present', 'yes')
        changes.append("clock: <timer name='hypervclock' present='yes'/>")
    if 'invtsc_missing' in ids and opts['invtsc'] == 'auto':
        if _feature(root, 'invtsc', 'require'):
            changes.append("cpu: <feature policy='require' name='invtsc'/>")


def fix_domain(xml_text, host, options=None, caps=None, name=None):
    """Return {xml, changed, changes, notes, findings_before, findings_after}.

    ``host`` is what avic_domain.audit_domain() takes (the vfio_avic fact); ``caps`` says
    what this libvirt/QEMU can do: {'hv_avic': bool, 'hv_avic_reason': str}. ``options``
    are CHOICES keys; ``nested: true`` keeps svm. A fix can reveal another finding (a guest
    without <cpu> gets host-passthrough, which then exposes svm), so passes repeat until
    nothing changes.
    """
    options = dict(options or {})
    nested = bool(options.pop('nested', False))
    opts = check_options(options)
    before = avic_domain.audit_domain(xml_text, host, name)
    current, findings, changes, notes = xml_text, before, [], []
    for _pass in range(3):
        step_changes, step_notes = [], []
        root = _parse(current, name)
        _apply(root, findings, opts, caps or {}, nested, step_changes, step_notes)
        if not step_changes:
            break
        changes.extend(step_changes)
        notes.extend(n for n in step_notes if n not in notes)
        current = _serialise(root)
        findings = avic_domain.audit_domain(current, host, name)
    return {'xml': current, 'changed': bool(changes), 'changes': changes, 'notes': notes,
            'findings_before': before, 'findings_after': findings}


def _apply(root, findings, opts, caps, nested, changes, notes):
    ids = set(f['id'] for f in findings)
    if 'cpu_mode_not_host' in ids and opts['cpu_mode'] == 'auto':
        cpu = _cpu(root)
        cpu.set('mode', 'host-passthrough')
        for tag in ('model', 'vendor'):
            for element in cpu.findall(tag):
                cpu.remove(element)
        changes.append("cpu: mode='host-passthrough'")
    if 'x2apic_exposed' in ids and opts['x2apic'] in ('auto', 'disable'):
        if _feature(root, 'x2apic', 'disable'):
            changes.append("cpu: <feature policy='disable' name='x2apic'/>")
    if 'svm_exposed' in ids and not nested and opts['svm'] in ('auto', 'disable'):
        if _feature(root, 'svm', 'disable'):
            changes.append("cpu: <feature policy='disable' name='svm'/>")
    if 'pit_reinject' in ids and opts['pit'] == 'auto':
        timer = _timer(root, 'pit')
        timer.set('tickpolicy', 'discard')
        changes.append("clock: <timer name='pit' tickpolicy='discard'/>")
    _fix_hyperv(root, ids, opts, caps, changes, notes)
    ioapic_wanted = opts['ioapic'] == 'qemu' or ('split_irqchip_required' in ids and opts['ioapic'] == 'auto')
    if ioapic_wanted:
        features = _child(root, 'features', before=('cpu', 'clock', 'on_poweroff', 'devices'))
        ioapic = _child(features, 'ioapic')
        if ioapic.get('driver') != 'qemu':
            ioapic.set('driver', 'qemu')
            changes.append("features: <ioapic driver='qemu'/> (split irqchip)")
