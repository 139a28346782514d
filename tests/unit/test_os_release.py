# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one os-release parser (parse/os_release.py), used by avic_facts and avic_kernel_select."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.parse import os_release

DEBIAN = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
          'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n')
# openSUSE Leap as shipped, with a comment line and single quotes
LEAP = "# generated\nNAME='openSUSE Leap'\nVERSION=\"15.6\"\nID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n\n"


def test_parse_strips_quotes_and_skips_comments():
    values = os_release.parse(LEAP)
    assert values == {'NAME': 'openSUSE Leap', 'VERSION': '15.6', 'ID': 'opensuse-leap',
                      'ID_LIKE': 'suse opensuse'}
    assert os_release.parse(None) == {}


def test_describe_and_family():
    assert os_release.describe(os_release.parse(DEBIAN)) == {
        'id': 'debian', 'id_like': [], 'version_id': '12', 'codename': 'bookworm',
        'family': 'Debian', 'proxmox': False}
    assert os_release.describe(os_release.parse(LEAP), proxmox=True)['family'] == 'Suse'
    assert os_release.family(os_release.parse('ID=nobara\n')) == 'RedHat'
    assert os_release.family(os_release.parse('ID=gentoo\n')) is None
    assert os_release.describe({})['id'] is None


def test_read_falls_back_to_usr_lib():
    files = {'/usr/lib/os-release': DEBIAN}
    assert os_release.read(files.get) == DEBIAN
    files['/etc/os-release'] = ''
    assert os_release.read(files.get) == DEBIAN
    assert os_release.read({}.get) == ''
