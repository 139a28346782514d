# -*- coding: utf-8 -*-
"""The parts of the VM lab script that need no VM: partition table, cache key, arguments."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import vm  # noqa: E402 pylint: disable=wrong-import-position

SCRIPT = os.path.join(REPO, 'tests', 'lab', 'vm.py')


def test_partition_table_has_one_bootable_linux_partition_after_the_grub_gap():
    table = vm.mbr(4096 * 2048)
    assert len(table) == 66 and table[-2:] == b'\x55\xaa'
    status, _chs1, ptype, _chs2, start, sectors = struct.unpack('<B3sB3sII', table[:16])
    assert (status, ptype, start) == (0x80, 0x83, vm.PART_START)
    assert start + sectors == 4096 * 2048
    assert table[16:64] == b'\x00' * 48


def test_cache_key_follows_the_script_and_the_suite(monkeypatch):
    key = vm.inputs_hash()
    assert len(key) == 16 and key == vm.inputs_hash()
    monkeypatch.setattr(vm, 'SUITE', 'trixie')
    assert vm.inputs_hash() != key


def test_bad_arguments_are_refused_without_touching_anything(tmp_path):
    env = dict(os.environ, VFIO_AVIC_VM_DIR=str(tmp_path))
    usage = subprocess.run([sys.executable, SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and 'vm.py build' in usage.stderr
    missing = subprocess.run([sys.executable, SCRIPT, 'start'], env=env, capture_output=True, text=True,
                             check=False)
    assert missing.returncode == 2 and 'needs an instance name' in missing.stderr
    bad = subprocess.run([sys.executable, SCRIPT, 'status', '../x'], env=env, capture_output=True, text=True,
                         check=False)
    assert bad.returncode != 0 and 'instance name' in bad.stderr
    status = subprocess.run([sys.executable, SCRIPT, 'status', 'nothing'], env=env, capture_output=True,
                            text=True, check=False)
    assert status.returncode == 0 and '"running": false' in status.stdout
    assert os.listdir(str(tmp_path)) == []
