# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""modprobe.d files read as kmod reads them (parse/modprobe.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.parse import modprobe as modprobe_parse


def test_file_order_first_directory_wins_then_sorted_by_name():
    order = modprobe_parse.modprobe_file_order({
        '/lib/modprobe.d': ['50-kvm.conf', '10-a.conf', 'README'],
        '/etc/modprobe.d': ['50-kvm.conf', 'zz-local.conf'],
        '/usr/lib/modprobe.d': ['00-first.conf'],
    })
    assert order == ['/usr/lib/modprobe.d/00-first.conf', '/lib/modprobe.d/10-a.conf',
                     '/etc/modprobe.d/50-kvm.conf', '/etc/modprobe.d/zz-local.conf']


def test_parse_modprobe_later_wins_hyphens_continuations_comments():
    files = [
        ('/etc/modprobe.d/kvm.conf', '# comment\noptions kvm-amd avic=0 nested=1\n'
                                     'options kvm_intel nested=1\n'),
        ('/etc/modprobe.d/vfio.conf', 'options kvm_amd \\\n  avic=1 npt=1\n# options kvm_amd avic=9\n'),
    ]
    result = modprobe_parse.parse_modprobe(files)
    assert result['options'] == {'avic': '1', 'nested': '1', 'npt': '1'}
    assert result['sources'] == {'avic': '/etc/modprobe.d/vfio.conf', 'nested': '/etc/modprobe.d/kvm.conf',
                                 'npt': '/etc/modprobe.d/vfio.conf'}
    assert result['files'] == ['/etc/modprobe.d/kvm.conf', '/etc/modprobe.d/vfio.conf']
    assert not result['blacklisted']


def test_blacklist_is_reported():
    assert modprobe_parse.parse_modprobe([('/etc/modprobe.d/b.conf', 'blacklist kvm-amd\n')])['blacklisted']
