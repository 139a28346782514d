# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where playbooks/audit.yml writes its report on this machine: a directory that cannot be made
is named with the variable, check mode says the files are written, and no PWD (cron, AWX) still
finds a directory."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')


def audit(cwd, *extra, **env_changes):
    playbook = shutil.which('ansible-playbook') or os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')
    if not os.path.exists(playbook):
        pytest.skip('ansible-playbook is not installed')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'))
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = subprocess.run([playbook, os.path.join(REPO, 'playbooks', 'audit.yml'),
                           '-i', os.path.join(REPO, 'inventory', 'localhost.yml'),
                           '-e', 'avic_audit_domains=false'] + list(extra),
                          cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    return proc.returncode, ' '.join(proc.stdout.split())


def test_a_report_directory_that_cannot_be_made_is_named(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('not a directory\n')
    rc, out = audit(tmp_path, '-e', 'avic_report_dir=%s/reports' % blocker)
    assert rc != 0
    assert 'avic_report_dir %s/reports: the report could not be written there' % blocker in out, out[-3000:]
    assert 'avic_report_write_files: false' in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a-file']


def test_check_mode_writes_the_report_and_says_so(tmp_path):
    rc, out = audit(tmp_path, '--check', '-e', 'avic_report_dir=%s' % tmp_path)
    assert rc == 0, out[-3000:]
    assert 'report written to %s/avic-audit.json and .md (check mode changes nothing on the hosts' % tmp_path in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ['avic-audit.json', 'avic-audit.md']


def test_without_pwd_the_report_goes_next_to_the_playbook(tmp_path):
    target = os.path.join(REPO, 'playbooks', 'reports')
    existed = os.path.isdir(target)
    try:
        rc, out = audit(tmp_path, PWD=None)
        assert rc == 0, out[-3000:]
        assert os.path.isfile(os.path.join(target, 'avic-audit.json')), out[-3000:]
        assert 'report written to %s/avic-audit.json' % target in out
        assert list(tmp_path.iterdir()) == [], 'nothing lands in the working directory'
    finally:
        if not existed:
            shutil.rmtree(target, ignore_errors=True)


def test_with_pwd_the_report_goes_to_the_working_directory(tmp_path):
    rc, out = audit(tmp_path, PWD=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert sorted(p.name for p in (tmp_path / 'reports').iterdir()) == ['avic-audit.json', 'avic-audit.md']
