# -*- coding: utf-8 -*-
"""The collection builds, installs, documents itself and runs its playbook by FQCN once installed."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import subprocess
import tarfile

import pytest

from conftest import REPO


def _run(argv, env, cwd):
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, '%s failed:\n%s%s' % (' '.join(argv), proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp('galaxy')
    env = dict(os.environ, ANSIBLE_NOCOLOR='1')
    env.pop('ANSIBLE_CONFIG', None)
    coll = base / 'collections'
    # Only this path counts, so a copy installed elsewhere cannot satisfy the install.
    env['ANSIBLE_COLLECTIONS_PATH'] = str(coll)
    _run(['ansible-galaxy', 'collection', 'build', '--output-path', str(base / 'dist'), REPO], env, str(base))
    tarballs = glob.glob(str(base / 'dist' / 'vfio-avic-*.tar.gz'))
    assert len(tarballs) == 1
    _run(['ansible-galaxy', 'collection', 'install', '--offline', '-p', str(coll), tarballs[0]], env, str(base))
    assert (coll / 'ansible_collections' / 'vfio' / 'avic' / 'MANIFEST.json').is_file()
    return tarballs[0], coll, env, base


def test_tarball_has_the_collection_and_nothing_local(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for wanted in ('MANIFEST.json', 'plugins/modules/avic_facts.py',
                   'plugins/module_utils/avic_domain.py', 'playbooks/audit.yml', 'README.md'):
        assert any(n == wanted or n.endswith('/' + wanted) for n in names), wanted
    for unwanted in ('.build', '.venv', '.git', 'reports', '.ansible', '.benchmarks', '.pytest_cache'):
        assert not any(n == unwanted or n.startswith(unwanted + '/') for n in names), unwanted


def test_installed_collection_documents_itself(installed):
    _tarball, _coll, env, base = installed
    out = _run(['ansible-doc', '--json', 'vfio.avic.avic_facts'], env, str(base))
    assert 'gather_domains' in json.loads(out)['vfio.avic.avic_facts']['doc']['options']
    out = _run(['ansible-doc', '-t', 'filter', '--json', 'vfio.avic.domain_avic_issues'], env, str(base))
    assert json.loads(out)['vfio.avic.domain_avic_issues']['doc']['name'] == 'domain_avic_issues'


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
