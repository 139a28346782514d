# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one os-release parser (stdlib only): os-release(5) KEY=value pairs, the Ansible-style
distribution family, and the distribution summary of the ``vfio_avic`` fact."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# os-release(5): /etc/os-release, else /usr/lib/os-release.
PATHS = ('/etc/os-release', '/usr/lib/os-release')

OS_FAMILIES = (
    ('Debian', ('debian', 'ubuntu', 'linuxmint', 'pop', 'raspbian', 'devuan', 'proxmox')),
    ('RedHat', ('fedora', 'rhel', 'centos', 'rocky', 'almalinux', 'ol', 'nobara')),
    ('Archlinux', ('arch', 'manjaro', 'endeavouros', 'cachyos')),
    ('Suse', ('opensuse', 'opensuse-leap', 'opensuse-tumbleweed', 'sles', 'suse')),
)


def read(read_file):
    """The text of the first non-empty os-release file of PATHS, through ``read_file(path)``
    (None for a missing file); '' when there is none."""
    for path in PATHS:
        text = read_file(path)
        if text:
            return text
    return ''


def parse(text):
    """KEY=value pairs of an os-release file (quotes removed, comments and blank lines skipped)."""
    values = {}
    for line in (text or '').splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        key, sep, value = line.partition('=')
        if sep:
            values[key.strip()] = value.strip().strip('"\'')
    return values


def family(values):
    """The Ansible-style family (Debian, RedHat, Archlinux, Suse) of ID or ID_LIKE, or None."""
    ident = values.get('ID', '').lower()
    like = values.get('ID_LIKE', '').lower().split()
    for name, ids in OS_FAMILIES:
        if ident in ids or any(i in ids for i in like):
            return name
    return None


def describe(values, proxmox=False):
    """{id, id_like, version_id, codename, family, proxmox} of parsed os-release values."""
    ident = values.get('ID', '').lower()
    return {'id': ident or None, 'id_like': values.get('ID_LIKE', '').lower().split(),
            'version_id': values.get('VERSION_ID'), 'codename': values.get('VERSION_CODENAME'),
            'family': family(values), 'proxmox': bool(proxmox)}
