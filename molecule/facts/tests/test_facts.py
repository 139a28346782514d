"""Testinfra checks of the facts lab, run by verify.yml against every instance.

1. The simulated hardware is what the target sees: /proc/cpuinfo and /sys/module are the
   read-only fixture bind mounts that molecule.yml declares for the instance.
2. The read-only module wrote nothing: /etc and /boot are exactly as prepare.yml recorded
   them, and no Ansible temporary directory is left behind.

Run by hand: python -m pytest molecule/facts/tests --hosts=podman://facts-zen2
(MOLECULE_PROJECT_DIRECTORY and MOLECULE_SCENARIO_DIRECTORY default to this checkout).
"""

import json
import os
import re

import pytest
import yaml

SCENARIO_DIR = os.environ.get('MOLECULE_SCENARIO_DIRECTORY') or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
PROJECT_DIR = os.environ.get('MOLECULE_PROJECT_DIRECTORY') or os.path.dirname(
    os.path.dirname(SCENARIO_DIR))
SNAPSHOT = '/usr/local/sbin/vfio-avic-lab-snapshot'
BEFORE = '/var/lib/vfio-avic-lab/before.txt'
READ_TREE = '''
import json, os
tree = {}
for top, _dirs, files in os.walk(%r):
    for name in files:
        with open(os.path.join(top, name)) as handle:
            tree[os.path.join(top, name)] = handle.read()
print(json.dumps(tree))
'''


def _platforms():
    with open(os.path.join(SCENARIO_DIR, 'molecule.yml')) as handle:
        config = yaml.safe_load(handle)
    return {p['name']: p for p in config['platforms']}


def _mounts(name):
    """{target path: fixture path on this machine} of an instance's bind mounts."""
    mounts = {}
    for volume in _platforms()[name].get('volumes', []):
        src, dst = volume.split(':')[:2]
        src = re.sub(r'\$\{?MOLECULE_PROJECT_DIRECTORY\}?', lambda _m: PROJECT_DIR, src)
        mounts[dst] = src
    return mounts


def _name(host):
    return host.backend.get_hostname()


def _read(path):
    with open(path) as handle:
        return handle.read()


def _is_ro_mount(host, path):
    for line in host.file('/proc/self/mountinfo').content_string.splitlines():
        fields = line.split()
        if fields[4] == path:
            return 'ro' in fields[5].split(',')
    return False


def test_cpuinfo_is_the_fixture(host):
    fixture = _mounts(_name(host))['/proc/cpuinfo']
    assert host.file('/proc/cpuinfo').content_string == _read(fixture), \
        'the instance does not see %s as /proc/cpuinfo' % os.path.relpath(fixture, PROJECT_DIR)
    assert _is_ro_mount(host, '/proc/cpuinfo')


def test_sys_module_is_the_fixture(host):
    fixture = _mounts(_name(host))['/sys/module']
    assert _is_ro_mount(host, '/sys/module')
    want = {}
    for dirpath, _dirs, files in os.walk(fixture):
        for name in files:
            local = os.path.join(dirpath, name)
            want['/sys/module/' + os.path.relpath(local, fixture)] = _read(local)
    # one round trip: every file below /sys/module with its exact content
    got = json.loads(host.check_output('python3 -c %s', READ_TREE % '/sys/module'))
    assert got == want


def test_sys_module_cannot_be_written(host):
    cmd = host.run('sh -c "echo Y > /sys/module/kvm/parameters/probe"')
    assert cmd.rc != 0, 'the /sys/module fixture is writable from the instance'


def test_etc_and_boot_unchanged(host):
    assert host.file(BEFORE).exists, 'prepare.yml did not record %s' % BEFORE
    before = host.file(BEFORE).content_string
    now = host.check_output(SNAPSHOT + ' 2>/dev/null')
    if now.strip() != before.strip():
        old, new = set(before.splitlines()), set(now.splitlines())
        pytest.fail('the module changed /etc or /boot:\n  gone: %s\n  new: %s'
                    % (sorted(old - new)[:20], sorted(new - old)[:20]))


def test_no_ansible_leftovers(host):
    leftovers = host.run('find /root/.ansible/tmp /tmp -mindepth 1 -maxdepth 1 -name "ansible*"')
    assert leftovers.stdout.strip() == ''
