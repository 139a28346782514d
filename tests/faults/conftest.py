# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault lab: real podman containers (the lab images of tests/lab), the real roles run by
ansible-playbook, and faults injected from outside: a full or read-only file system, a SIGKILL of
ansible-playbook, libvirtd stopped or restarted. Needs root and `sudo make deps`."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')
FIXTURES = os.path.join(REPO, 'tests', 'fixtures')
PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks')
BIN = os.path.dirname(sys.executable)
PREFIX = 'vfio-avic-fault-'
RECAP = re.compile(r'^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def lab_missing():
    if os.geteuid() != 0:
        return 'the fault lab runs podman as root'
    if not shutil.which('podman'):
        return 'podman is not installed (sudo make deps)'
    for image in ('localhost/vfio-avic-bookworm', 'localhost/vfio-avic-bookworm-libvirt'):
        if subprocess.run(['podman', 'image', 'exists', image], check=False).returncode != 0:
            return '%s is missing (sudo make deps)' % image
    return None


def podman(*args, check=True):
    return subprocess.run(['podman'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=check)


class Container(object):
    """One simulated host: a lab image under systemd with fixture cpuinfo and /sys/module."""

    def __init__(self, name, image='localhost/vfio-avic-bookworm', cpuinfo='zen2_epyc_7702.txt',
                 sys_module='zen2_avic_off', mounts=()):
        self.name = PREFIX + name
        podman('rm', '-f', self.name, check=False)
        argv = ['run', '-d', '--name', self.name, '--hostname', name, '--network', 'none',
                '--systemd', 'always',
                '-v', '%s:/proc/cpuinfo:ro' % os.path.join(FIXTURES, 'cpuinfo', cpuinfo),
                '-v', '%s:/sys/module:ro' % os.path.join(FIXTURES, 'sys_module', sys_module)]
        for mount in mounts:
            argv.extend(mount)
        podman(*(argv + [image, '/sbin/init']))
        deadline = time.time() + 90
        while True:  # systemctl needs systemd's bus, which comes up a moment after the start
            boot = self.sh('systemctl is-system-running --wait', check=False)
            state = boot.stdout.strip()
            if state or time.time() > deadline:
                break
            time.sleep(0.5)
        assert state in ('running', 'degraded'), 'container %s did not boot: %s %s %s' % (
            self.name, state, boot.stderr, podman('logs', self.name, check=False).stdout[-2000:])

    def sh(self, script, check=True):
        return podman('exec', self.name, 'sh', '-c', script, check=check)

    def read(self, path):
        result = self.sh('cat %s' % path, check=False)
        return result.stdout if result.returncode == 0 else None

    def write(self, path, text):
        subprocess.run(['podman', 'exec', '-i', self.name, 'sh', '-c',
                        'mkdir -p "$(dirname %s)" && cat > %s' % (path, path)],
                       input=text, universal_newlines=True, check=True)

    def files(self, directory):
        """Names in ``directory`` (hidden ones too), sorted."""
        out = self.sh('ls -A %s 2>/dev/null || true' % directory).stdout.split()
        return sorted(out)

    def remove(self):
        podman('rm', '-f', '-t', '2', self.name, check=False)


@pytest.fixture
def containers():
    """Start containers with containers(name, **kw); every one is removed after the test."""
    missing = lab_missing()
    if missing:
        pytest.skip(missing)
    started = []

    def start(name, **kw):
        box = Container(name, **kw)
        started.append(box)
        return box

    yield start
    for box in started:
        box.remove()


def write_inventory(tmp_path, boxes, host_vars=None):
    lines = ['all:', '  hosts:']
    for box in boxes:
        short = box.name[len(PREFIX):]
        lines.append('    %s:' % short)
        lines.append('      ansible_connection: containers.podman.podman')
        lines.append('      ansible_host: %s' % box.name)
        lines.append('      ansible_python_interpreter: /usr/bin/python3')
        for key, value in sorted(((host_vars or {}).get(short) or {}).items()):
            lines.append('      %s: %s' % (key, value))
    path = tmp_path / 'inventory.yml'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


class Run(object):
    """What one ansible-playbook run printed and how it ended."""

    def __init__(self, rc, output, killed=False):
        self.rc, self.output, self.killed = rc, output, killed
        self.recap = dict((m.group(1), {'ok': int(m.group(2)), 'changed': int(m.group(3)),
                                        'unreachable': int(m.group(4)), 'failed': int(m.group(5))})
                          for m in RECAP.finditer(output))

    def failed(self, host):
        assert host in self.recap, 'no recap for %s:\n%s' % (host, self.output[-4000:])
        return self.recap[host]['failed'] > 0


def playbook(inventory, name, extra_vars=None, kill_when=None, check=False):
    """Run tests/faults/playbooks/<name> against ``inventory``; with ``kill_when`` (a regular
    expression), SIGKILL ansible-playbook as soon as its output matches it."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0', ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'), PYTHONUNBUFFERED='1',
               PATH=os.pathsep.join([BIN, os.environ.get('PATH', '')]))
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', inventory, os.path.join(PLAYBOOKS, name)]
    for key, value in sorted((extra_vars or {}).items()):
        argv.extend(['-e', '%s=%s' % (key, value)])
    if check:
        argv.append('--check')
    # its own process group, so that a kill takes the forked workers and their podman exec too,
    # as when the controller machine dies
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            universal_newlines=True, start_new_session=True)
    output, killed = [], False
    deadline = time.time() + 900
    for line in proc.stdout:
        output.append(line)
        if kill_when and not killed and re.search(kill_when, line):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        if time.time() > deadline:
            proc.kill()
            break
    proc.wait()
    text = ''.join(output)
    if kill_when:
        assert killed, 'the run ended before %r appeared:\n%s' % (kill_when, text[-3000:])
    return Run(proc.returncode, text, killed)
