# -*- coding: utf-8 -*-
"""Make the checkout importable as ansible_collections.vfio.avic and share fixtures."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')
LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'vfio', 'avic')
FIXTURES = os.path.join(REPO, 'tests', 'fixtures')

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)


def fixture_text(*parts):
    with open(os.path.join(FIXTURES, *parts)) as handle:
        return handle.read()


@pytest.fixture
def cpuinfo():
    return lambda name: fixture_text('cpuinfo', name)


@pytest.fixture
def domain_xml():
    return lambda name: fixture_text('domains', name)


def write_host_tree(root, cpuinfo_name=None, kernel='6.1.0-26-amd64', params=None, files=None,
                    guests=None, proc_version=None, cmdline='BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet'):
    """Write a host's files below ``root``, as the kernel and the distribution lay them out.

    params: kvm_amd sysfs parameters (None: module not loaded); files: {path: text};
    guests: {pid: argv list} written as /proc/<pid>/cmdline.
    """
    def put(rel, text):
        path = os.path.join(str(root), rel.lstrip('/'))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)

    put('/proc/cpuinfo', fixture_text('cpuinfo', cpuinfo_name) if cpuinfo_name else '')
    put('/proc/sys/kernel/osrelease', kernel + '\n')
    put('/proc/cmdline', cmdline + '\n')
    put('/proc/sys/kernel/tainted', '0\n')
    if proc_version:
        put('/proc/version', proc_version)
    if params is not None:
        for name, value in params.items():
            put('/sys/module/kvm_amd/parameters/%s' % name, '%s\n' % value)
    for pid, argv in (guests or {}).items():
        put('/proc/%d/cmdline' % pid, '\0'.join(argv) + '\0')
    for rel, text in (files or {}).items():
        put(rel, text)
    return str(root)


@pytest.fixture
def host_tree(tmp_path):
    return lambda **kw: write_host_tree(tmp_path, **kw)
