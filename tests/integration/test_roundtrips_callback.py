# -*- coding: utf-8 -*-
"""benchmarks/callback_plugins/roundtrips.py counts what a real ansible-playbook run sends to a host.

Runs against localhost with the local connection: no root and no tracefs needed.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLAYBOOK = """
- name: Round trips
  hosts: localhost
  gather_facts: false
  tasks:
    - name: One plain task (1)
      ansible.builtin.command: 'true'
      changed_when: false
    - name: A loop of three (3)
      ansible.builtin.command: 'echo {{ item }}'
      loop: [a, b, c]
      changed_when: false
    - name: A loop with one item skipped (2)
      ansible.builtin.command: 'echo {{ item }}'
      loop: [a, b, c]
      when: item != 'b'
      changed_when: false
    - name: A with_items loop with a failed item (2)
      ansible.builtin.command: '{{ item }}'
      with_items: ['true', 'false']
      changed_when: false
      ignore_errors: true
    - name: A skipped task (0)
      ansible.builtin.command: 'true'
      when: false
    - name: Controller-only loop (0)
      ansible.builtin.debug:
        msg: '{{ item }}'
      loop: [a, b]
    - name: Controller-only task (0)
      ansible.builtin.set_fact:
        x: 1
"""


def test_loop_items_are_counted_one_by_one(tmp_path):
    playbook_bin = shutil.which('ansible-playbook') or os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')
    if not os.path.exists(playbook_bin):
        pytest.skip('ansible-playbook is not installed')
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    out = tmp_path / 'roundtrips.json'
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, 'benchmarks', 'callback_plugins'),
               ANSIBLE_CALLBACKS_ENABLED='roundtrips', ANSIBLE_NOCOLOR='1',
               VFIO_AVIC_ROUNDTRIPS_FILE=str(out))
    proc = subprocess.run(
        [playbook_bin, '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=python3',
         str(tmp_path / 'play.yml')], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(out.read_text()) == {'localhost': 8}, proc.stdout
