# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""/proc/cpuinfo blocks (parse/cpuinfo.py) on the recorded fixtures."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.parse import cpuinfo

from conftest import fixture_text


def test_blocks_of_a_real_cpuinfo():
    blocks = cpuinfo.blocks(fixture_text('cpuinfo', 'zen2_epyc_7702.txt'))
    assert len(blocks) == 4
    assert blocks[0]['vendor_id'] == 'AuthenticAMD' and blocks[0]['cpu family'] == '23'
    assert 'avic' in blocks[0]['flags'].split()
    assert cpuinfo.blocks(fixture_text('cpuinfo', 'zen2_epyc_7702.txt').encode()) == blocks


def test_blocks_tolerate_garbage():
    assert cpuinfo.blocks(fixture_text('cpuinfo', 'garbled.txt')) == []
    assert cpuinfo.blocks(fixture_text('cpuinfo', 'empty.txt')) == []
    assert cpuinfo.blocks(None) == [] and cpuinfo.blocks(42) == []


def test_number():
    assert cpuinfo.number('23') == 23 and cpuinfo.number(' 0x19 ') == 25
    assert cpuinfo.number('zen') is None and cpuinfo.number(None) is None
