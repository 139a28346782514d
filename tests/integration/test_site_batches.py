# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml refuses, before the kernel or the host role runs on it, a host that may reboot
(its avic_*_reboot set in the inventory, where the plays' serial cannot see it) in a batch of
several hosts; the others of the batch go on. Two inventory names for this machine (local
connection), in check mode, so nothing here is changed."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')


def site(tmp_path, inventory, *extra):
    playbook = shutil.which('ansible-playbook') or os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')
    if not os.path.exists(playbook):
        pytest.skip('ansible-playbook is not installed')
    path = tmp_path / 'inventory.ini'
    path.write_text(inventory)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'))
    proc = subprocess.run([playbook, os.path.join(REPO, 'playbooks', 'site.yml'), '-i', str(path), '--check',
                           '-e', 'avic_site_gather_domains=false', '-e', 'avic_site_report_dir=%s' % tmp_path]
                          + list(extra), cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    return proc.returncode, ' '.join(proc.stdout.split())


HOSTS = ('[avic_hosts]\n'
         'one ansible_connection=local ansible_python_interpreter=python3\n'
         'two ansible_connection=local ansible_python_interpreter=python3 %s\n')


@pytest.mark.parametrize('role', ['kernel', 'host'])
def test_a_rebooting_host_in_a_batch_of_several_is_refused_before_the_role(tmp_path, role):
    rc, out = site(tmp_path, HOSTS % ('avic_%s_reboot=true' % role), '--tags', role)
    assert rc != 0, out[-3000:]
    assert ('fatal: [two]: FAILED!' in out and
            'avic_%s_reboot is true for two but this batch holds 2 hosts' % role in out), out[-3000:]
    assert 'fatal: [one]' not in out.split('Refuse to reboot several hosts of one batch')[1].split('TASK [')[0]
    recap = out.rsplit('PLAY RECAP', maxsplit=1)[-1]
    assert 'two : ok=' in recap and recap.split('two : ')[1].split()[:4][-1] == 'failed=1', recap
    # the role ran on the other host only (whatever it concluded on this machine)
    role_part = out.split('TASK [vfio.avic.%s :' % role, 1)[1] if 'TASK [vfio.avic.%s :' % role in out else ''
    assert '[one]' in role_part and '[two]' not in role_part.split('PLAY [')[0], out[-3000:]


def test_a_false_value_in_the_inventory_is_not_a_reboot(tmp_path):
    rc, out = site(tmp_path, HOSTS % 'avic_kernel_reboot=false avic_host_reboot=no', '--tags', 'kernel,host',
                   '-e', 'avic_kernel_mode=keep', '-e', 'avic_host_manage_cmdline=false')
    assert 'Refuse to reboot several hosts of one batch' in out, out[-3000:]
    assert 'but this batch holds' not in out, out[-3000:]
    assert 'TASK [vfio.avic.kernel' in out and 'TASK [vfio.avic.host' in out, out[-3000:]
