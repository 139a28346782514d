# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-doc documents every module, filter and role entry point of the collection."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import importlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import COLLECTIONS, REPO

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1')
ENV.pop('ANSIBLE_CONFIG', None)


def _doc(*args):
    proc = subprocess.run([os.path.join(BIN, 'ansible-doc')] + list(args), env=ENV, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, 'ansible-doc %s failed:\n%s%s' % (' '.join(args), proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope='module')
def dump():
    # Without --no-fail-on-errors: one plugin whose documentation does not load fails the call.
    return json.loads(_doc('--metadata-dump', 'vfio.avic'))['all']


def _modules():
    return sorted('vfio.avic.' + os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py'))
                  if not os.path.basename(p).startswith('_'))


def _filters():
    names = set()
    for path in glob.glob(os.path.join(REPO, 'plugins', 'filter', '*.py')):
        module = importlib.import_module('ansible_collections.vfio.avic.plugins.filter.' + os.path.basename(path)[:-3])
        names.update(module.FilterModule().filters())
    return sorted('vfio.avic.' + n for n in names)


def _role_specs():
    specs = {}
    for path in sorted(glob.glob(os.path.join(REPO, 'roles', '*', 'meta', 'argument_specs.yml'))):
        role = path.split(os.sep)[-3]
        with open(path) as handle:
            specs['vfio.avic.' + role] = yaml.safe_load(handle)['argument_specs']
    return specs


def test_every_role_has_argument_specs():
    roles = sorted('vfio.avic.' + os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'roles', '*')))
    assert sorted(_role_specs()) == roles


def test_every_module_is_documented(dump):
    assert sorted(dump['module']) == _modules()
    for name, entry in dump['module'].items():
        assert 'error' not in entry, entry.get('error')
        doc = entry['doc']
        assert doc['short_description'] and doc['description'] and doc['version_added'], name
        assert entry['examples'] and entry['return'] is not None, name


def test_every_filter_is_documented(dump):
    assert sorted(dump['filter']) == _filters()
    for name, entry in dump['filter'].items():
        assert 'error' not in entry, entry.get('error')
        assert entry['doc']['short_description'] and entry['examples'] and entry['return'], name


def test_every_role_entry_point_is_documented(dump):
    specs = _role_specs()
    assert sorted(dump['role']) == sorted(specs)
    for role, entries in specs.items():
        assert sorted(dump['role'][role]['entry_points']) == sorted(entries), role


@pytest.mark.parametrize('role,entry', sorted((r, e) for r, entries in _role_specs().items() for e in entries))
def test_ansible_doc_shows_each_role_entry_point(role, entry):
    text = _doc('-t', 'role', role, '-e', entry)
    spec = _role_specs()[role][entry]
    assert spec['short_description'] in ' '.join(text.split())
    for option in spec.get('options') or {}:
        assert option in text, '%s %s: option %s missing from ansible-doc' % (role, entry, option)
