# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this libvirt and QEMU can do, from ``virsh version --daemon`` (stdlib only):
parse_virsh_version() reads the versions, hv_avic_caps() says whether a domain may carry
Hyper-V's <avic state='on'/>."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils.rules import hyperv as hyperv_rules

# <hyperv><avic state='on'/> in the domain XML: libvirt 8.10 [doc]; QEMU's hv-avic: the Hyper-V rules' own
HV_AVIC_LIBVIRT = (8, 10)
HV_AVIC_QEMU = hyperv_rules.QEMU_HV_AVIC
_VERSION_LINES = {
    'daemon': re.compile(r'^\s*Running against daemon:\s*(\d+)\.(\d+)(?:\.(\d+))?', re.M),
    'library': re.compile(r'^\s*Using library:\s*libvirt\s+(\d+)\.(\d+)(?:\.(\d+))?', re.M),
    'hypervisor': re.compile(r'^\s*Running hypervisor:\s*QEMU\s+(\d+)\.(\d+)(?:\.(\d+))?', re.M),
}


def _triple(match):
    if not match:
        return None
    return tuple(int(g or 0) for g in match.groups())


def version_text(version):
    """'x.y.z' of a version tuple, 'unknown' for None."""
    return '.'.join(str(v) for v in version) if version else 'unknown'


def parse_virsh_version(text):
    """Versions from ``virsh version --daemon``: {'libvirt', 'library', 'qemu'}, each a
    (major, minor, micro) tuple or None.

    ``libvirt`` is the daemon's version ("Running against daemon"), which decides what the
    domain XML may contain; it falls back to the client library when virsh printed no daemon
    line. ``qemu`` is the "Running hypervisor: QEMU x.y.z" line only ("Using API: QEMU" names
    the libvirt driver API version, not QEMU's).
    """
    text = text or ''
    library = _triple(_VERSION_LINES['library'].search(text))
    daemon = _triple(_VERSION_LINES['daemon'].search(text))
    return {'libvirt': daemon or library, 'library': library,
            'qemu': _triple(_VERSION_LINES['hypervisor'].search(text))}


def hv_avic_caps(versions):
    """{'hv_avic': bool, 'hv_avic_reason': str or None, 'libvirt': 'x.y.z', 'qemu': 'x.y.z'}:
    whether <avic state='on'/> can be used (libvirt >= 8.10 [doc], QEMU hv-avic >= 6.2 [?])."""
    libvirt, qemu = versions.get('libvirt'), versions.get('qemu')
    caps = {'hv_avic': True, 'hv_avic_reason': None,
            'libvirt': version_text(libvirt), 'qemu': version_text(qemu)}
    if libvirt is None:
        caps.update(hv_avic=False, hv_avic_reason='libvirt version unknown (virsh version printed none)')
    elif libvirt[:2] < HV_AVIC_LIBVIRT:
        caps.update(hv_avic=False, hv_avic_reason='libvirt %s is older than %d.%d'
                    % ((version_text(libvirt),) + HV_AVIC_LIBVIRT))
    elif qemu is not None and qemu[:2] < HV_AVIC_QEMU:
        caps.update(hv_avic=False, hv_avic_reason='QEMU %s is older than %d.%d'
                    % ((version_text(qemu),) + HV_AVIC_QEMU))
    return caps
