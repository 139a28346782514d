# -*- coding: utf-8 -*-
"""Run the avic_facts module the way Ansible does, against fixture host trees."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

from conftest import COLLECTIONS, REPO


def run_module(args, *flags):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'))
    proc = subprocess.run(
        ['ansible', 'localhost', '-i', 'localhost,', '-c', 'local', '-o',
         '-e', 'ansible_python_interpreter=python3', '-m', 'vfio.avic.avic_facts', '-a', args] + list(flags),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith('localhost |')][0]
    status, _sep, payload = line.partition(' => ')
    return status, json.loads(payload)


def test_module_reports_a_fixture_host(host_tree):
    root = host_tree(cpuinfo_name='zen4_epyc_9654.txt', kernel='6.8.0-45-generic',
                     params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    status, result = run_module('root=%s gather_dmesg=false' % root)
    assert 'SUCCESS' in status and result['changed'] is False
    facts = result['ansible_facts']['vfio_avic']
    assert facts['cpu']['microarchitecture'] == 'zen4' and facts['status'] == 'active'
    assert facts['avic'] is True and facts['x2avic'] is True and facts['root'] == root


def test_module_in_check_mode_and_on_garbage(host_tree):
    root = host_tree(files={'/proc/cpuinfo': 'not cpuinfo at all\x01\x02'})
    status, result = run_module('root=%s' % root, '--check')
    assert 'SUCCESS' in status and result['changed'] is False
    assert result['ansible_facts']['vfio_avic']['cpu']['vendor'] == 'unknown'


def test_module_rejects_a_missing_root(tmp_path):
    status, result = run_module('root=%s' % (tmp_path / 'nope'))
    assert 'FAILED' in status
    assert 'is not a directory' in result['msg'] and 'nope' in result['msg']


def test_module_rejects_unknown_options():
    status, result = run_module('gather_everything=true')
    assert 'FAILED' in status and 'gather_everything' in result['msg']


def test_module_names_an_unparseable_kernel_release(host_tree):
    root = host_tree(cpuinfo_name='zen4_epyc_9654.txt', kernel='weird',
                     params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    status, result = run_module('root=%s gather_dmesg=false' % root)
    assert 'SUCCESS' in status
    facts = result['ansible_facts']['vfio_avic']
    found = [f for f in facts['findings'] if f['id'] == 'kernel_unparseable']
    assert len(found) == 1 and "'weird'" in found[0]['message'] and found[0]['severity'] == 'warning'
    assert 'cpu_unknown' not in [f['id'] for f in facts['findings']]
