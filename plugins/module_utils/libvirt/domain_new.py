# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the XML of a new libvirt guest from a short spec (stdlib only).

Every value goes through ElementTree, never through string templates, so a name or path with
XML special characters cannot inject XML. The AVIC settings are not chosen here:
domain_fix.fix_domain() applies them for the host afterwards, so new and existing guests
follow the same rules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import xml.etree.ElementTree as ET

PROFILES = ('windows', 'linux')
_PCI = re.compile(r'^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$')
OVMF = {'loader': '/usr/share/OVMF/OVMF_CODE_4M.fd', 'template': '/usr/share/OVMF/OVMF_VARS_4M.fd'}


class SpecError(ValueError):
    """A guest spec the user must fix (the message names the field)."""


def _int(spec, key, default, low, high):
    value = spec.get(key, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise SpecError('%s of guest %r must be a whole number, got %r' % (key, spec.get('name'), value))
    if not low <= value <= high:
        raise SpecError('%s of guest %r must be between %d and %d, got %d'
                        % (key, spec.get('name'), low, high, value))
    return value


def _sub(parent, tag, attrib=None, text=None):
    element = ET.SubElement(parent, tag, dict((k, str(v)) for k, v in (attrib or {}).items()))
    if text is not None:
        element.text = str(text)
    return element


def disk_target(prefix, index):
    """Target device name of the ``index``-th disk (0-based) on a bus: vda ... vdz, vdaa, vdab ...
    (the kernel's own naming after z)."""
    if index < 0:
        raise ValueError('disk index must not be negative')
    letters = ''
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = 'abcdefghijklmnopqrstuvwxyz'[rest] + letters
    return prefix + letters


def pci_address(text, guest):
    match = _PCI.match(str(text).strip())
    if not match:
        raise SpecError('host device %r of guest %r is not a PCI address like 0000:0b:00.0' % (text, guest))
    domain, bus, slot, function = match.groups()
    return {'domain': '0x' + (domain or '0000'), 'bus': '0x' + bus, 'slot': '0x' + slot,
            'function': '0x' + function}


def build(spec):
    """Domain XML text for ``spec`` (name, profile, vcpus, memory_mib, firmware, machine,
    cpu_pinning, disks, hostdevs, network, bridge, domain_type)."""
    if not isinstance(spec, dict):
        raise SpecError('each new guest must be a dict with at least name, got %r' % (spec,))
    name = spec.get('name')
    if not isinstance(name, str) or not name.strip() or '/' in name or len(name) > 200:
        raise SpecError('a new guest needs a name (text without "/", at most 200 characters), got %r'
                        % (name,))
    profile = spec.get('profile', 'linux')
    if profile not in PROFILES:
        raise SpecError('profile of guest %r must be one of %s, got %r' % (name, ', '.join(PROFILES), profile))
    vcpus = _int(spec, 'vcpus', 2, 1, 1024)
    memory = _int(spec, 'memory_mib', 4096, 128, 16 * 1024 * 1024)
    firmware = spec.get('firmware', 'ovmf' if profile == 'windows' else 'bios')
    if firmware not in ('bios', 'ovmf'):
        raise SpecError('firmware of guest %r must be bios or ovmf, got %r' % (name, firmware))
    dtype = spec.get('domain_type', 'kvm')
    if dtype not in ('kvm', 'qemu'):
        raise SpecError('domain_type of guest %r must be kvm or qemu, got %r' % (name, dtype))

    root = ET.Element('domain', {'type': dtype})
    _sub(root, 'name', text=name)
    _sub(root, 'memory', {'unit': 'MiB'}, memory)
    _sub(root, 'vcpu', {'placement': 'static'}, vcpus)
    pinning = spec.get('cpu_pinning') or []
    if pinning:
        if len(pinning) != vcpus:
            raise SpecError('cpu_pinning of guest %r lists %d host CPUs for %d vCPUs'
                            % (name, len(pinning), vcpus))
        tune = _sub(root, 'cputune')
        for index, cpuset in enumerate(pinning):
            if not re.match(r'^[0-9,\-^]+$', str(cpuset)):
                raise SpecError('cpu_pinning entry %r of guest %r is not a cpuset like 4 or 4-5'
                                % (cpuset, name))
            _sub(tune, 'vcpupin', {'vcpu': index, 'cpuset': cpuset})
    os_el = _sub(root, 'os')
    _sub(os_el, 'type', {'arch': 'x86_64', 'machine': spec.get('machine', 'q35')}, 'hvm')
    if firmware == 'ovmf':
        _sub(os_el, 'loader', {'readonly': 'yes', 'type': 'pflash'}, spec.get('ovmf_code', OVMF['loader']))
        _sub(os_el, 'nvram', {'template': spec.get('ovmf_vars', OVMF['template'])})
    features = _sub(root, 'features')
    _sub(features, 'acpi')
    _sub(features, 'apic')
    if profile == 'windows':
        hyperv = _sub(features, 'hyperv', {'mode': 'custom'})
        for tag in ('relaxed', 'vpindex', 'runtime', 'synic', 'stimer', 'frequencies'):
            _sub(hyperv, tag, {'state': 'on'})
        _sub(hyperv, 'spinlocks', {'state': 'on', 'retries': 8191})
    if dtype == 'kvm':
        _sub(root, 'cpu', {'mode': 'host-passthrough', 'check': 'none', 'migratable': 'on'})
    else:  # QEMU TCG cannot run the host CPU model: QEMU's default model, named
        cpu = _sub(root, 'cpu', {'mode': 'custom', 'match': 'exact', 'check': 'none'})
        _sub(cpu, 'model', {'fallback': 'forbid'}, 'qemu64')
    clock = _sub(root, 'clock', {'offset': 'localtime' if profile == 'windows' else 'utc'})
    _sub(clock, 'timer', {'name': 'rtc', 'tickpolicy': 'catchup'})
    _sub(clock, 'timer', {'name': 'hpet', 'present': 'no'})
    devices = _sub(root, 'devices')
    per_bus = {}
    for index, disk in enumerate(spec.get('disks') or []):
        path = disk.get('path') if isinstance(disk, dict) else disk
        if not isinstance(path, str) or not path.startswith('/'):
            raise SpecError('disk %d of guest %r needs an absolute path, got %r' % (index, name, path))
        device = disk.get('device', 'disk') if isinstance(disk, dict) else 'disk'
        bus = disk.get('bus', 'virtio' if device == 'disk' else 'sata') if isinstance(disk, dict) else 'virtio'
        fmt = disk.get('format', 'qcow2' if path.endswith('.qcow2') else 'raw') if isinstance(disk, dict) else \
            ('qcow2' if path.endswith('.qcow2') else 'raw')
        el = _sub(devices, 'disk', {'type': 'block' if path.startswith('/dev/') else 'file', 'device': device})
        _sub(el, 'driver', {'name': 'qemu', 'type': fmt})
        _sub(el, 'source', {'dev' if path.startswith('/dev/') else 'file': path})
        prefix = {'virtio': 'vd', 'ide': 'hd'}.get(bus, 'sd')
        _sub(el, 'target', {'dev': disk_target(prefix, per_bus.get(prefix, 0)), 'bus': bus})
        per_bus[prefix] = per_bus.get(prefix, 0) + 1
        if device == 'cdrom':
            _sub(el, 'readonly')
    if spec.get('bridge'):
        nic = _sub(devices, 'interface', {'type': 'bridge'})
        _sub(nic, 'source', {'bridge': spec['bridge']})
        _sub(nic, 'model', {'type': 'virtio'})
    elif spec.get('network'):
        nic = _sub(devices, 'interface', {'type': 'network'})
        _sub(nic, 'source', {'network': spec['network']})
        _sub(nic, 'model', {'type': 'virtio'})
    for address in spec.get('hostdevs') or []:
        hostdev = _sub(devices, 'hostdev', {'mode': 'subsystem', 'type': 'pci', 'managed': 'yes'})
        source = _sub(hostdev, 'source')
        _sub(source, 'address', pci_address(address, name))
    _sub(devices, 'memballoon', {'model': 'none' if spec.get('hostdevs') else 'virtio'})
    if hasattr(ET, 'indent'):  # Python 3.9+
        ET.indent(root)
    return ET.tostring(root, encoding='unicode') + '\n'
