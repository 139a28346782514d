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


def role_vars(role, family, names, facts=None, **variables_of_the_play):
    """The values of ``names`` from roles/<role>/vars/main.yml, templated by Ansible itself as
    the role would on a host whose avic_facts report OS family ``family`` (None: no family) and
    the rest of ``facts``, with the role's defaults and ``variables_of_the_play`` set."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    loader = DataLoader()
    path = os.path.join(REPO, 'roles', role, 'vars', 'main.yml')
    try:  # ansible-core 2.19 templates only what it was told to trust, as it trusts a role's files
        data = loader.load_from_file(path, trusted_as_template=True)
    except TypeError:
        data = loader.load_from_file(path)
    variables = dict(loader.load_from_file(os.path.join(REPO, 'roles', role, 'defaults', 'main.yml')) or {})
    variables.update(data)
    variables.update(variables_of_the_play)
    variables['vfio_avic'] = dict(facts or {}, os=dict((facts or {}).get('os') or {}, family=family))
    templar = Templar(loader=loader, variables=variables)
    return dict((name, templar.template(variables[name])) for name in names)


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


def run_ansible_module(module, args, *flags):
    """Run a module of the collection with `ansible localhost -o`: (status, result dict)."""
    import json
    import subprocess
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'))
    proc = subprocess.run(
        ['ansible', 'localhost', '-i', 'localhost,', '-c', 'local', '-o',
         '-e', 'ansible_python_interpreter=python3', '-m', module, '-a', args] + list(flags),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('localhost |')]
    assert lines, 'no result from %s: %s %s' % (module, proc.stdout, proc.stderr)
    status, _sep, payload = lines[0].partition(' => ')
    return status, json.loads(payload)


def run_module_direct(module, args, check_mode=False, diff=False):
    """Run plugins/modules/<module>.py as a script with an args file: the full result dict,
    including ``diff``, which ad-hoc ansible output leaves out."""
    import json
    import subprocess
    import tempfile
    payload = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
    try:
        proc = subprocess.run(
            [sys.executable, '-m', 'ansible_collections.vfio.avic.plugins.modules.%s' % module,
             handle.name], cwd=REPO, env=dict(os.environ, PYTHONPATH=COLLECTIONS),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    finally:
        os.unlink(handle.name)
    return json.loads(proc.stdout)
