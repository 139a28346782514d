# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QEMU arguments of a fixed Proxmox VE guest, given to a real QEMU.

For every configuration of tests/fixtures/proxmox and several hosts, the fix (fix_plan: the new
cpu option, its custom CPU model, the merged args) is applied, the arguments qemu-server gives
the fixed guest are built (proxmox_argv with the merged cpu-models.conf), and a real
qemu-system-x86_64 starts with them under TCG, stopped (-S), then quits: an argument QEMU rejects
fails the test. What needs a Proxmox VE or KVM host is adapted, and only that:

- ``-id`` is an option of Proxmox VE's patched QEMU only: dropped;
- the ``host`` CPU model needs KVM: TCG's ``max`` takes the same flags and properties;
- ``enforce`` checks what the accelerator supports, not the arguments: dropped;
- TCG cannot set ``hv_vpindex`` ("kernel doesn't allow setting HyperV VP_INDEX", QEMU 7.2):
  given as ``hv_vpindex=off``, so that its name is still checked;
- the machine type: Proxmox VE's ``+pveN`` suffix and machine versions newer than the installed
  QEMU become the newest of that family (``pc``/``q35``) this QEMU has;
- SEV needs an SEV host: the ``sev-guest`` object and ``confidential-guest-support`` are dropped;
- ``-device`` (CPU hotplug) needs the real command line's socket/core ids: dropped.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit'))
import conftest  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import

from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox as proxmox_guest  # noqa: E402
from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox_fix  # noqa: E402

QEMU = shutil.which('qemu-system-x86_64')
pytestmark = pytest.mark.skipif(QEMU is None, reason='qemu-system-x86_64 is not installed (sudo make deps)')
FIXTURES = os.path.join(conftest.REPO, 'tests', 'fixtures', 'proxmox')
CONFS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FIXTURES, '*.conf'))
               if not p.endswith('cpu-models.conf'))
HOSTS = {
    # no x2AVIC: x2apic off; SynIC/stimer keep with hv-avic
    'zen3-6.1': {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False},
    # before 5.15 with nested=1: svm off, SynIC and stimer turned off (-hv-synic;-hv-stimer)
    'zen2-5.10': {'kernel': '5.10.0-30-amd64', 'avic': True, 'x2avic': False, 'nested': True},
    # x2AVIC: x2apic kept
    'zen4-6.8': {'kernel': '6.8.0-45-generic', 'avic': True, 'x2avic': True},
}


def read(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def qemu_version():
    out = subprocess.run([QEMU, '--version'], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    match = re.search(r'version (\d+)\.(\d+)', out)
    return int(match.group(1)), int(match.group(2))


def machines():
    out = subprocess.run([QEMU, '-machine', 'help'], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    return set(line.split()[0] for line in out.splitlines()[1:] if line.strip())


def _machine_type(value, known):
    value = re.sub(r'\+pve\d+$', '', value)
    if value in known:
        return value
    return 'q35' if 'q35' in value else 'pc'


def runnable(argv, known):
    """The arguments a TCG QEMU can take (the adaptations of the module docstring)."""
    out, index = [], 1
    while index < len(argv):
        arg = argv[index]
        value = argv[index + 1] if index + 1 < len(argv) else None
        if arg in ('-id', '-device') or (arg == '-object' and value.startswith('sev')):
            index += 2
            continue
        if arg == '-cpu':
            parts = value.split(',')
            parts[0] = 'max' if parts[0] == 'host' else parts[0]
            value = ','.join('hv_vpindex=off' if p == 'hv_vpindex' else p
                             for p in parts if p != 'enforce')
        elif arg == '-machine':
            parts = [p for p in value.split(',')
                     if not p.startswith(('accel=', 'confidential-guest-support='))]
            value = ','.join('type=' + _machine_type(p[5:], known) if p.startswith('type=') else p
                             for p in parts)
            if not value:
                index += 2
                continue
        out.append(arg)
        if value is not None and not arg.startswith('-no'):
            out.append(value)
            index += 1
        index += 1
    return out


def start_and_quit(args):
    proc = subprocess.run(
        [QEMU, '-accel', 'tcg', '-S', '-display', 'none', '-monitor', 'stdio', '-nodefaults', '-m', '64']
        + args, input='quit\n', stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=60, check=False)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize('host', sorted(HOSTS))
@pytest.mark.parametrize('name', CONFS)
def test_qemu_starts_with_the_fixed_arguments(name, host):
    qemu = qemu_version()
    facts = dict(HOSTS[host], qemu='%d.%d' % qemu)
    models = read('cpu-models.conf')
    plan = proxmox_fix.fix_plan(read(name), facts, 8006, models)
    if plan['cpu_model']:
        models = proxmox_fix.merge_cpu_model(models, plan['cpu_model']['name'], plan['cpu_model']['text'])
    argv = proxmox_guest.proxmox_argv(plan['conf'], 8006, models, qemu=qemu)
    args = runnable(argv, machines())
    rc, err = start_and_quit(args)
    assert rc == 0, '%s on %s: QEMU refused %s:\n%s' % (name, host, ' '.join(args), err)
    assert 'not found' not in err and 'Invalid' not in err, err


def test_a_rejected_argument_fails():
    """The harness sees what QEMU refuses: '-hv_synic' (what a custom model's flag of qemu-server's
    own spelling would give) is not a QEMU property."""
    rc, err = start_and_quit(['-cpu', 'max,hv_relaxed,-hv_synic'])
    assert rc != 0 and "hv_synic' not found" in err
    rc, err = start_and_quit(['-cpu', 'max,-hv-synic,hv_relaxed,hv_synic', '-global',
                              'kvm-pit.lost_tick_policy=discard'])
    assert rc == 0 and 'Ambiguous CPU model string' in err  # the spelling the fix uses
