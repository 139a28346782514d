# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-doc documents every module, public filter and role entry point of the collection, and lists
none of the roles' internal filters."""
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


def _filters(private=False):
    """The public filters, or (private) the roles' internal ones: those of the files whose name
    starts with '__' (plugins/filter/__roles.py)."""
    names = set()
    for path in glob.glob(os.path.join(REPO, 'plugins', 'filter', '*.py')):
        if os.path.basename(path).startswith('__') != private:
            continue
        module = importlib.import_module('ansible_collections.vfio.avic.plugins.filter.' + os.path.basename(path)[:-3])
        names.update(module.FilterModule().filters())
    return sorted('vfio.avic.' + n for n in names)


def _former_filter_names():
    """The deprecated redirects of meta/runtime.yml: {old FQCN: routing entry}."""
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as handle:
        routing = yaml.safe_load(handle).get('plugin_routing', {}).get('filter', {})
    return {'vfio.avic.' + name: entry for name, entry in routing.items()}


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


def test_role_filters_are_private(dump):
    """The roles' filters start with '_', have no documentation, and ansible-doc lists none of them
    nor their former public names."""
    private = _filters(private=True)
    assert private and all(name.split('.')[-1].startswith('_') for name in private)
    listed = json.loads(_doc('-t', 'filter', '-l', '--json', 'vfio.avic'))
    assert sorted(listed) == _filters()
    for name in private + sorted(_former_filter_names()):
        assert name not in listed and name not in dump['filter'], name
    for name in private:
        assert not os.path.exists(os.path.join(REPO, 'plugins', 'filter', name.split('.')[-1] + '.yml')), name


def test_former_role_filter_names_are_deprecated_redirects():
    former = _former_filter_names()
    private = _filters(private=True)
    assert sorted(entry['redirect'] for entry in former.values()) == private
    for name, entry in former.items():
        assert entry['deprecation']['removal_version'] == '1.0.0', name
        assert entry['deprecation']['warning_text'].startswith(name.split('.')[-1] + ' is internal'), name
    # Jinja resolves a private name and a former one (through the redirect, with the warning).
    template = ('{{ ([] | vfio.avic._host_reboot_guard).action }} '
                '{{ ([] | vfio.avic.avic_host_reboot_guard).action }}')
    proc = subprocess.run([os.path.join(BIN, 'ansible'), 'localhost', '-c', 'local', '-i', 'localhost,',
                           '-m', 'ansible.builtin.debug', '-a', 'msg="%s"' % template],
                          env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'proceed proceed' in proc.stdout
    assert 'avic_host_reboot_guard is internal to the roles of vfio.avic' in ' '.join(proc.stderr.split())


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
