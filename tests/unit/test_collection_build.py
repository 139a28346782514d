# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The built tarball installs next to a bare ansible-core, documents itself and runs from there.

"Bare" is what a user of a distribution's ansible-core has: the collections path holds only what
``ansible-galaxy collection install`` put there, and the copies bundled in the ``ansible`` package
are not scanned (``ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false``). The dependencies galaxy.yml declares
are placed into that path from the ``ansible`` package's bundled copies (there is no Galaxy server
here), and nothing else is.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from conftest import REPO

GALAXY = yaml.safe_load(open(os.path.join(REPO, 'galaxy.yml')))
OWN = ('vfio.avic', 'ansible.builtin')
# The ansible-core of the Python running the tests (each leg of the version matrix has its own).
BIN = os.path.dirname(sys.executable)


def _proc(argv, env, cwd):
    argv = [os.path.join(BIN, argv[0])] + argv[1:]
    return subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)


def _run(argv, env, cwd):
    proc = _proc(argv, env, cwd)
    assert proc.returncode == 0, '%s failed:\n%s%s' % (' '.join(argv), proc.stdout, proc.stderr)
    return proc.stdout


def _bare_env(coll):
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false')
    env.pop('ANSIBLE_CONFIG', None)
    # Only this path counts, so a copy installed elsewhere cannot satisfy anything.
    env['ANSIBLE_COLLECTIONS_PATH'] = str(coll)
    return env


def _bundled(fqcn):
    """The ``ansible`` package's copy of a collection (the stand-in for a Galaxy download)."""
    spec = importlib.util.find_spec('ansible_collections.' + fqcn)
    assert spec is not None and spec.submodule_search_locations, \
        '%s is not bundled with the installed ansible package' % fqcn
    return list(spec.submodule_search_locations)[0]


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp('galaxy')
    coll = base / 'collections'
    env = _bare_env(coll)
    _run(['ansible-galaxy', 'collection', 'build', '--output-path', str(base / 'dist'), REPO], env, str(base))
    tarballs = glob.glob(str(base / 'dist' / 'vfio-avic-*.tar.gz'))
    assert len(tarballs) == 1
    # The declared dependencies and theirs (community.general 13 needs
    # community.library_inventory_filtering_v1), as a Galaxy install would bring them.
    wanted, placed = list(GALAXY['dependencies']), set()
    while wanted:
        fqcn = wanted.pop()
        if fqcn in placed:
            continue
        namespace, name = fqcn.split('.')
        (coll / 'ansible_collections' / namespace).mkdir(parents=True, exist_ok=True)
        os.symlink(_bundled(fqcn), str(coll / 'ansible_collections' / namespace / name))
        placed.add(fqcn)
        with open(os.path.join(_bundled(fqcn), 'MANIFEST.json')) as handle:
            wanted.extend(json.load(handle)['collection_info'].get('dependencies') or {})
    _run(['ansible-galaxy', 'collection', 'install', '--offline', '-p', str(coll), tarballs[0]], env, str(base))
    assert (coll / 'ansible_collections' / 'vfio' / 'avic' / 'MANIFEST.json').is_file()
    return tarballs[0], coll, env, base


def test_tarball_has_the_collection_and_nothing_local(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for wanted in ('MANIFEST.json', 'LICENSE', 'plugins/modules/avic_facts.py', 'meta/runtime.yml',
                   'meta/execution-environment.yml', 'meta/ee-requirements.txt', 'bindep.txt',
                   'plugins/module_utils/rules/domain.py', 'playbooks/audit.yml', 'README.md',
                   'CHANGELOG.md', 'changelogs/changelog.yaml'):
        assert any(n == wanted or n.endswith('/' + wanted) for n in names), wanted
    for unwanted in ('.build', '.venv', '.git', 'reports', '.ansible', '.benchmarks', '.pytest_cache'):
        assert not any(n == unwanted or n.startswith(unwanted + '/') for n in names), unwanted


def test_manifest_declares_the_dependencies_and_the_licence(installed):
    _tarball, coll, _env, _base = installed
    manifest = json.loads((coll / 'ansible_collections' / 'vfio' / 'avic' / 'MANIFEST.json').read_text())
    assert manifest['collection_info']['dependencies'] == GALAXY['dependencies']
    assert manifest['collection_info']['license'] == ['GPL-3.0-or-later']
    licence = (coll / 'ansible_collections' / 'vfio' / 'avic' / 'LICENSE').read_text()
    assert licence.startswith('                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007')


def test_install_without_the_dependencies_is_refused(installed):
    tarball, _coll, _env, base = installed
    empty = base / 'empty'
    proc = _proc(['ansible-galaxy', 'collection', 'install', '--offline', '-p', str(empty), tarball],
                 _bare_env(empty), str(base))
    assert proc.returncode != 0
    for fqcn in GALAXY['dependencies']:
        assert fqcn in proc.stdout + proc.stderr


def _referenced(kind):
    """FQCNs of other collections' modules (task keys) or filters the roles and playbooks use."""
    found = set()
    files = glob.glob(os.path.join(REPO, 'roles', '*', '*', '*.yml')) + glob.glob(os.path.join(REPO, 'playbooks', '*.yml'))
    pattern = (re.compile(r'^\s*-?\s*([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*):', re.M) if kind == 'module'
               else re.compile(r"(?:\|\s*|map\(\s*')([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)"))
    for path in files:
        with open(path) as handle:
            found.update(pattern.findall(handle.read()))
    return sorted(name for name in found if not name.startswith(tuple(c + '.' for c in OWN)))


def test_every_other_collection_used_is_declared_and_resolves(installed):
    _tarball, _coll, env, base = installed
    modules, filters = _referenced('module'), _referenced('filter')
    assert 'community.general.modprobe' in modules and 'community.general.dict_kv' in filters
    used = {'.'.join(name.split('.')[:2]) for name in modules + filters}
    assert used <= set(GALAXY['dependencies']), 'galaxy.yml dependencies miss %s' % (used - set(GALAXY['dependencies']))
    for kind, names in (('module', modules), ('filter', filters)):
        docs = json.loads(_run(['ansible-doc', '-t', kind, '--json'] + names, env, str(base)))
        assert sorted(docs) == names


def test_installed_collection_documents_itself(installed):
    _tarball, _coll, env, base = installed
    out = _run(['ansible-doc', '--json', 'vfio.avic.avic_facts'], env, str(base))
    assert 'gather_domains' in json.loads(out)['vfio.avic.avic_facts']['doc']['options']
    out = _run(['ansible-doc', '-t', 'filter', '--json', 'vfio.avic.domain_avic_issues'], env, str(base))
    assert json.loads(out)['vfio.avic.domain_avic_issues']['doc']['name'] == 'domain_avic_issues'
    out = _run(['ansible-doc', '-t', 'role', 'vfio.avic.host'], env, str(base))
    assert 'avic_host_force_avic' in out


def test_installed_audit_playbook_runs_by_fqcn(installed):
    _tarball, _coll, env, base = installed
    report = base / 'out' / 'audit.json'
    out = _run(['ansible-playbook', '-i', 'localhost,', '-c', 'local',
                '-e', 'ansible_python_interpreter=python3', '-e', 'avic_report_dir=%s' % report.parent,
                '-e', 'avic_audit_report_name=audit',
                'vfio.avic.audit'], env, str(base))
    assert 'failed=0' in out
    data = json.loads(report.read_text())
    assert list(data['hosts']) == ['localhost'] and data['totals']['hosts'] == 1
    assert data['hosts']['localhost']['summary']['host'] == 'localhost'
    assert (base / 'out' / 'audit.md').read_text().startswith('# AVIC fleet report')


def test_installed_site_playbook_resolves_every_task(installed):
    _tarball, _coll, env, base = installed
    # --syntax-check loads every role and imported task file and resolves each action by name.
    out = _run(['ansible-playbook', '-i', 'localhost,', '--syntax-check', 'vfio.avic.site'], env, str(base))
    assert 'vfio.avic.site' in out or 'site.yml' in out


def test_installed_role_validates_its_arguments(installed):
    _tarball, _coll, env, base = installed
    play = base / 'bad-host-vars.yml'
    play.write_text(
        '- name: The host role refuses a variable of the wrong type before it touches anything\n'
        '  hosts: localhost\n'
        '  gather_facts: false\n'
        '  roles:\n'
        '    - role: vfio.avic.host\n'
        '      vars:\n'
        '        avic_host_force_avic: maybe\n')
    proc = _proc(['ansible-playbook', '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=python3',
                  str(play)], env, str(base))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # ansible-core 2.16 quotes the entry point ('main'), later releases do not.
    assert re.search(r"Validating arguments against arg spec '?main'?", proc.stdout), proc.stdout
    assert re.search(r"argument 'avic_host_force_avic' is of type .* bool", proc.stdout), proc.stdout
    assert 'ok=0' in proc.stdout and 'failed=1' in proc.stdout


def test_execution_environment_takes_the_collections_own_requirements(installed):
    _tarball, coll, env, base = installed
    out = _run(['ansible-builder', 'introspect', '--sanitize', str(coll)], env, str(base))
    data = yaml.safe_load(out)
    ours = [line for line in data['system'] if line.endswith('# from collection vfio.avic')]
    assert ours == ['openssh-client [platform:dpkg]  # from collection vfio.avic',
                    'openssh-clients [platform:rpm]  # from collection vfio.avic']
    # Not the checkout's requirements.txt (molecule, pytest, ...): the EE gets nothing of ours.
    assert not [line for line in data['python'] if 'vfio.avic' in line]


def test_execution_environment_definition_builds_its_context(installed):
    tarball, _coll, env, base = installed
    work = base / 'ee'
    work.mkdir()
    shutil.copy(os.path.join(REPO, 'tests', 'ee', 'execution-environment.yml'), str(work))
    shutil.copy(tarball, str(work / 'vfio-avic.tar.gz'))
    _run(['ansible-builder', 'create', '-f', 'execution-environment.yml', '-c', 'context'], env, str(work))
    containerfile = (work / 'context' / 'Containerfile').read_text()
    assert containerfile.startswith('ARG EE_BASE_IMAGE="quay.io/fedora/fedora:42"\n')
    # The tarball is in the context's _build/, which is the working directory of the galaxy step.
    assert re.search(r'^COPY _build /build\nWORKDIR /build\n(.*\n)*RUN .*ansible-galaxy collection install .*-r requirements.yml',
                     containerfile, re.M)
    assert (work / 'context' / '_build' / 'galaxy' / 'vfio-avic.tar.gz').is_file()
    requirements = yaml.safe_load((work / 'context' / '_build' / 'requirements.yml').read_text())
    assert requirements['collections'] == [{'name': 'galaxy/vfio-avic.tar.gz', 'type': 'file'}]
