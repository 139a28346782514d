# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host as the guest rules see it: the vfio_avic fact (or a plain {kernel, avic, x2avic} dict)
checked and normalised once (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules.topology import X2AVIC_MAX_APIC_ID

AMD_VENDORS = ('amd', 'hygon')


class HostFactsError(ValueError):
    """A host description that the audit cannot use."""


def normalise_host(host):
    """Check and normalise the host description; raises HostFactsError."""
    if not isinstance(host, dict):
        raise HostFactsError('host must be a dict with kernel, avic and x2avic (the vfio_avic fact '
                             'of vfio.avic.avic_facts is one), got %s' % type(host).__name__)
    missing = [k for k in ('kernel', 'avic', 'x2avic') if k not in host]
    if missing:
        raise HostFactsError('host is missing %s: pass the vfio_avic fact of vfio.avic.avic_facts, '
                             'or a dict like {kernel: "6.8.0-45-generic", avic: true, x2avic: false}'
                             % ', '.join(missing))
    try:
        kernel = kernel_rules.parse_release(host['kernel'])
    except kernel_rules.KernelReleaseError as exc:
        raise HostFactsError('host kernel: %s' % exc)
    nested = host.get('nested')
    if nested is None and isinstance(host.get('kvm_amd'), dict):
        nested = (host['kvm_amd'].get('parameters') or {}).get('nested')
    vendor, vendor_id = host_vendor(host)
    invtsc = host.get('invtsc')
    if invtsc is None and isinstance(host.get('cpu'), dict):
        invtsc = host['cpu'].get('invtsc')
    x2avic_ext = host.get('x2avic_ext')
    if x2avic_ext is None and isinstance(host.get('dmesg'), dict):
        # "x2AVIC enabled (max N vCPUs)" (6.19+): N is 4096 with X2AVIC_EXT, 512 without
        max_vcpus = host['dmesg'].get('x2avic_max_vcpus')
        if isinstance(max_vcpus, int):
            x2avic_ext = max_vcpus > X2AVIC_MAX_APIC_ID + 1
    return {
        'vendor': vendor,
        'vendor_id': vendor_id,
        'amd': vendor is None or vendor in AMD_VENDORS,
        'kernel': kernel,
        'caps': kernel_rules.capabilities(kernel),
        'avic': parse_bool(host['avic'], False),
        'x2avic': parse_bool(host['x2avic'], False),
        'nested': None if nested is None else parse_bool(nested, False),
        'invtsc': None if invtsc is None else parse_bool(invtsc, False),
        'x2avic_ext': None if x2avic_ext is None else parse_bool(x2avic_ext, False),
        'qemu': qemu_version(host.get('qemu')),
    }


def qemu_version(value):
    """(major, minor) of a QEMU version given as '7.2.0', (7, 2, 0) or similar; None when unknown."""
    if isinstance(value, (tuple, list)) and len(value) >= 2:
        try:
            return int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
    if isinstance(value, str):
        parts = value.strip().split('.')
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1])
    return None


def host_vendor(host):
    """(vendor, vendor_id) of the host's CPU from the vfio_avic fact, or (None, None) when the host
    dict does not say (a plain {kernel, avic, x2avic} dict, or cpuinfo that could not be read).

    rules/cpu reports vendor 'unknown' both for unreadable cpuinfo and for other vendors; only a
    vendor_id tells them apart.
    """
    cpu = host.get('cpu') if isinstance(host, dict) else None
    if not isinstance(cpu, dict):
        return None, None
    vendor = str(cpu.get('vendor') or '').strip().lower() or None
    vendor_id = cpu.get('vendor_id') or None
    if vendor in (None, 'unknown') and not vendor_id:
        return None, None
    return vendor or 'unknown', vendor_id
