# -*- coding: utf-8 -*-
"""The avic_domain module: its pure helpers, and the module itself run the way Ansible runs it.

libvirt is played by a small stand-in ``virsh`` on PATH that keeps each domain's persistent and
live XML and its state in files under tmp_path, and refuses a domain name that is not given with
--domain. The host's CPU, kernel and kvm_amd state come from fixture trees (option ``root``), so
the results do not depend on the machine the tests run on. The real libvirt test is the molecule
``guest`` scenario.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import hostfs
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import versions as libvirt_versions

from conftest import fixture_text, run_ansible_module, run_module_direct

# `virsh version --daemon` as printed by real hosts
VIRSH_VERSION = {
    # Debian 12 (bookworm): libvirt 9.0.0, QEMU 7.2.0; "Using API" names the driver API version
    'debian12': ('Compiled against library: libvirt 9.0.0\n'
                 'Using library: libvirt 9.0.0\n'
                 'Using API: QEMU 9.0.0\n'
                 'Running hypervisor: QEMU 7.2.0\n'
                 'Running against daemon: 9.0.0\n'),
    # Ubuntu 22.04 (jammy): libvirt 8.0.0, QEMU 6.2.0
    'jammy': ('Compiled against library: libvirt 8.0.0\n'
              'Using library: libvirt 8.0.0\n'
              'Using API: QEMU 8.0.0\n'
              'Running hypervisor: QEMU 6.2.0\n'
              'Running against daemon: 8.0.0\n'),
    # a newer client against an older remote daemon
    'remote': ('Compiled against library: libvirt 10.0.0\n'
               'Using library: libvirt 10.0.0\n'
               'Using API: QEMU 10.0.0\n'
               'Running hypervisor: QEMU 6.2.0\n'
               'Running against daemon: 8.0.0\n'),
    # a daemon that cannot tell its hypervisor's version
    'no_hypervisor': ('Compiled against library: libvirt 9.0.0\n'
                      'Using library: libvirt 9.0.0\n'
                      'Using API: QEMU 9.0.0\n'
                      'Cannot extract running QEMU hypervisor version\n'
                      'Running against daemon: 9.0.0\n'),
}

FAKE_VIRSH = r'''#!%(python)s
import os, re, shutil, sys, xml.etree.ElementTree as ET
state = os.environ['FAKE_VIRSH_STATE']
args = sys.argv[1:]
with open(os.path.join(state, 'calls.log'), 'a') as log:
    log.write(' '.join(args) + '\n')
uri = None
if args[:1] == ['-c']:
    uri, args = args[1], args[2:]
if 'nonexistent' in (uri or ''):
    sys.stderr.write('error: failed to connect to the hypervisor\n')
    sys.exit(1)
cmd, rest = args[0], args[1:]
opts, i = {}, 0
while i < len(rest):
    if rest[i] in ('--domain', '--file'):
        opts[rest[i]] = rest[i + 1]
        i += 2
    elif rest[i].startswith('--'):
        opts[rest[i]] = True
        i += 1
    else:
        sys.stderr.write('error: stand-in virsh wants --domain/--file, got %%r\n' %% rest[i])
        sys.exit(2)

def path(kind, name):
    return os.path.join(state, kind, name + '.xml')

def read(p):
    with open(p) as h:
        return h.read()

def set_state(name, value):
    with open(os.path.join(state, 'state', name), 'w') as h:
        h.write(value)

def get_state(name):
    try:
        return read(os.path.join(state, 'state', name)).strip()
    except IOError:
        return 'shut off'

name = opts.get('--domain')
if cmd == 'version':
    sys.stdout.write(read(os.path.join(state, 'version.txt')))
elif cmd == 'define':
    text = read(opts['--file'])
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        sys.stderr.write('error: (domain_definition):1: %%s\n' %% exc)
        sys.exit(1)
    name = root.findtext('name')
    with open(path('persistent', name), 'w') as h:
        h.write(text)
    print("Domain '%%s' defined from %%s" %% (name, opts['--file']))
elif not name or not os.path.exists(path('persistent', name)):
    sys.stderr.write("error: failed to get domain '%%s'\n" %% name)
    sys.exit(1)
elif cmd == 'dominfo':
    print('Name:           %%s\nState:          %%s' %% (name, get_state(name)))
elif cmd == 'domstate':
    print(get_state(name) + '\n')
elif cmd == 'dumpxml':
    live = path('live', name)
    sys.stdout.write(read(path('persistent', name) if '--inactive' in opts or not os.path.exists(live) else live))
elif cmd == 'shutdown':
    print('Domain %%s is being shutdown' %% name)
    if not os.path.exists(os.path.join(state, 'ignore_shutdown')):
        set_state(name, 'shut off')
        os.unlink(path('live', name))
elif cmd == 'destroy':
    set_state(name, 'shut off')
    if os.path.exists(path('live', name)):
        os.unlink(path('live', name))
    print('Domain %%s destroyed' %% name)
elif cmd == 'start':
    refuse = os.path.join(state, 'refuse_start_with')
    if os.path.exists(refuse) and read(refuse).strip() in read(path('persistent', name)):
        sys.stderr.write("error: Failed to start domain '%%s'\nerror: internal error: qemu "
                         "unexpectedly closed the monitor: host doesn't support invariant TSC\n" %% name)
        sys.exit(1)
    shutil.copy(path('persistent', name), path('live', name))
    set_state(name, 'running')
    print('Domain %%s started' %% name)
else:
    sys.stderr.write('error: unknown command %%r\n' %% cmd)
    sys.exit(1)
'''

ZEN2 = dict(cpuinfo_name='zen2_epyc_7702.txt', kernel='6.1.0-26-amd64',
            params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})


def renamed(fixture, name):
    text = fixture_text('domains', fixture)
    return text.replace(ET.fromstring(text).findtext('name'), name, 1)


class Libvirt(object):
    """The stand-in libvirt's files."""

    def __init__(self, base, version='debian12'):
        self.state = base / 'libvirt'
        for kind in ('persistent', 'live', 'state'):
            (self.state / kind).mkdir(parents=True)
        (self.state / 'version.txt').write_text(VIRSH_VERSION[version])
        bindir = base / 'bin'
        bindir.mkdir()
        virsh = bindir / 'virsh'
        virsh.write_text(FAKE_VIRSH % {'python': sys.executable})
        virsh.chmod(0o755)
        self.bindir = str(bindir)

    def add(self, name, persistent, live=None, state=None):
        (self.state / 'persistent' / (name + '.xml')).write_text(persistent)
        if live is not None:
            (self.state / 'live' / (name + '.xml')).write_text(live)
        if state:
            (self.state / 'state' / name).write_text(state)

    def persistent(self, name):
        path = self.state / 'persistent' / (name + '.xml')
        return path.read_text() if path.exists() else None

    def live(self, name):
        path = self.state / 'live' / (name + '.xml')
        return path.read_text() if path.exists() else None

    def calls(self):
        path = self.state / 'calls.log'
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def libvirt(tmp_path, monkeypatch):
    lab = Libvirt(tmp_path)
    monkeypatch.setenv('FAKE_VIRSH_STATE', str(lab.state))
    # the stand-in virsh first; the interpreter's directory for `ansible` when pytest runs outside make
    monkeypatch.setenv('PATH', os.pathsep.join([lab.bindir, os.path.dirname(sys.executable),
                                                os.environ.get('PATH', '')]))
    return lab


def domain(host_root, backups, **args):
    args.setdefault('root', host_root)
    args.setdefault('backup_dir', str(backups))
    return args


# ---- pure helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize('sample, libvirt_version, qemu, supported', [
    ('debian12', (9, 0, 0), (7, 2, 0), True),
    ('jammy', (8, 0, 0), (6, 2, 0), False),
    ('remote', (8, 0, 0), (6, 2, 0), False),
    ('no_hypervisor', (9, 0, 0), None, True),
])
def test_virsh_version_reads_the_daemon_and_the_hypervisor(sample, libvirt_version, qemu, supported):
    versions = libvirt_versions.parse_virsh_version(VIRSH_VERSION[sample])
    assert versions['libvirt'] == libvirt_version and versions['qemu'] == qemu
    caps = libvirt_versions.hv_avic_caps(versions)
    assert caps['hv_avic'] is supported
    assert caps['libvirt'] == '.'.join(map(str, libvirt_version))
    if not supported:
        assert caps['hv_avic_reason'] == 'libvirt 8.0.0 is older than 8.10'


def test_virsh_version_edge_cases():
    assert libvirt_versions.parse_virsh_version(VIRSH_VERSION['remote'])['library'] == (10, 0, 0)
    no_daemon = 'Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\n'
    assert libvirt_versions.parse_virsh_version(no_daemon) == {'libvirt': (9, 0, 0), 'library': (9, 0, 0), 'qemu': None}
    caps = libvirt_versions.hv_avic_caps(libvirt_versions.parse_virsh_version(''))
    assert caps['hv_avic'] is False and 'unknown' in caps['hv_avic_reason']
    old_qemu = VIRSH_VERSION['debian12'].replace('QEMU 7.2.0', 'QEMU 6.1.0')
    assert libvirt_versions.hv_avic_caps(libvirt_versions.parse_virsh_version(old_qemu))['hv_avic_reason'] == 'QEMU 6.1.0 is older than 6.2'


def test_backup_names_never_collide(tmp_path):
    now = 1700000000.123456
    first = hostfs.backup_path(str(tmp_path), 'win 10', now)
    assert os.path.basename(first).startswith('win_10-') and first.endswith('.123456.xml')
    open(first, 'w').close()
    second = hostfs.backup_path(str(tmp_path), 'win 10', now)
    assert second != first and second.endswith('.123456-1.xml')
    paths = [hostfs.write_backup(str(tmp_path / 'b'), 'g', 'x%d' % i) for i in range(20)]
    assert len(set(paths)) == 20
    assert all(oct(os.stat(p).st_mode & 0o777) == '0o600' for p in paths)
    assert oct(os.stat(str(tmp_path / 'b')).st_mode & 0o777) == '0o700'
    conf = hostfs.backup_path(str(tmp_path), 'qemu-server-100', now, suffix='.conf')
    assert conf.endswith('.123456.conf') and os.path.basename(conf).startswith('qemu-server-100-')


# ---- the module against the stand-in libvirt -----------------------------------------------

def test_fix_backs_up_defines_and_diffs_only_the_changes(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    libvirt.add('win10', renamed('seed_windows_before.xml', 'win10'))
    original = libvirt.persistent('win10')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='win10', state='fixed'),
                               diff=True)
    assert result['changed'] is True and result['active'] is False, result
    assert result['hv_avic'] == {'hv_avic': True, 'hv_avic_reason': None, 'libvirt': '9.0.0', 'qemu': '7.2.0'}
    now = ET.fromstring(libvirt.persistent('win10'))
    assert now.find('features/hyperv/avic').get('state') == 'on'
    assert not [f for f in result['findings_after'] if f['severity'] == 'inhibit']
    with open(result['backup']) as handle:
        assert handle.read() == original
    before, after = result['diff']['before'].splitlines(), result['diff']['after'].splitlines()
    removed = [ln for ln in before if ln not in after]
    added = [ln for ln in after if ln not in before]
    assert removed == ['      <vapic state="on" />', '    <timer name="pit" tickpolicy="delay" />'], removed
    assert len(added) == len(result['changes']), (added, result['changes'])
    calls = libvirt.calls()
    assert [c.split()[2:4] for c in calls if ' define ' in c] == [['define', '--file']]
    assert all('--domain win10' in c for c in calls if c.split()[2] in ('dominfo', 'dumpxml', 'domstate'))
    again = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='win10', state='fixed'))
    assert again['changed'] is False and again['backup'] is None and again['changes'] == []


def test_check_mode_defines_and_backs_up_nothing(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    libvirt.add('lin', renamed('pit_missing.xml', 'lin'))
    original = libvirt.persistent('lin')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='lin', state='fixed'),
                               check_mode=True, diff=True)
    assert result['changed'] is True and result['backup'] is None
    assert "tickpolicy=\"discard\"" in result['diff']['after']
    assert libvirt.persistent('lin') == original and not (tmp_path / 'backups').exists()
    assert not [c for c in libvirt.calls() if ' define ' in c]


def test_restart_applies_a_definition_fixed_in_an_earlier_run(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    libvirt.add('lin', renamed('clean_linux.xml', 'lin'), live=renamed('pit_missing.xml', 'lin'), state='running')
    args = domain(host, tmp_path / 'backups', name='lin', state='fixed')
    result = run_module_direct('avic_domain', args)
    assert result['changed'] is False and result['restart_required'] is True and result['restarted'] is False
    assert result['domain_state'] == 'running'
    result = run_module_direct('avic_domain', dict(args, restart=True), check_mode=True)
    assert result['changed'] is True and result['restarted'] is False
    assert 'would be restarted' in result['notes'][-1]
    assert not [c for c in libvirt.calls() if ' shutdown ' in c]
    result = run_module_direct('avic_domain', dict(args, restart=True))
    assert result['changed'] is True and result['restarted'] is True and result['restart_required'] is False
    assert libvirt.live('lin') == libvirt.persistent('lin')
    assert [c.split()[2:] for c in libvirt.calls() if c.split()[2] in ('shutdown', 'start')] == [
        ['shutdown', '--domain', 'lin'], ['start', '--domain', 'lin']]
    again = run_module_direct('avic_domain', dict(args, restart=True))
    assert again['changed'] is False and again['restart_required'] is False


def test_a_timeout_reports_what_was_already_done(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    old = renamed('pit_missing.xml', 'lin')
    libvirt.add('lin', old, live=old, state='running')
    (libvirt.state / 'ignore_shutdown').write_text('')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='lin', state='fixed',
                                                     restart=True, shutdown_timeout=1))
    assert result['failed'] is True and 'did not shut down within 1 s' in result['msg']
    assert result['changed'] is True and result['restart_required'] is True and result['restarted'] is False
    with open(result['backup']) as handle:
        assert handle.read() == old
    assert 'discard' in libvirt.persistent('lin') and libvirt.live('lin') == old
    assert not [c for c in libvirt.calls() if ' destroy ' in c]


def test_a_paused_guest_needs_a_restart_but_is_not_restarted(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    old = renamed('pit_missing.xml', 'lin')
    libvirt.add('lin', old, live=old, state='paused')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='lin', state='fixed',
                                                     restart=True))
    assert result['changed'] is True and result['active'] is True and result['restart_required'] is True
    assert result['restarted'] is False and 'is paused, so it was not restarted' in result['notes'][-1]
    assert not [c for c in libvirt.calls() if ' shutdown ' in c]


def test_audited_with_xml_defines_nothing(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    xml = renamed('pit_missing.xml', 'newbie')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='newbie', xml=xml,
                                                     state='audited'))
    assert result['changed'] is False and result['defined'] is False
    assert [f['id'] for f in result['findings_before']] == ['pit_reinject']
    assert 'nothing was defined' in result['notes'][0]
    assert libvirt.persistent('newbie') is None
    defined = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='newbie', xml=xml,
                                                      state='fixed'))
    assert defined['changed'] is True and defined['defined'] is True and defined['backup'] is None
    assert 'discard' in libvirt.persistent('newbie')


def test_explicit_hyperv_avic_fails_on_an_old_libvirt_and_auto_falls_back(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    (libvirt.state / 'version.txt').write_text(VIRSH_VERSION['jammy'])
    libvirt.add('win10', renamed('hyperv_stimer.xml', 'win10'))
    original = libvirt.persistent('win10')
    args = domain(host, tmp_path / 'backups', name='win10', state='fixed')
    status, result = run_ansible_module('vfio.avic.avic_domain', json.dumps(dict(args, hyperv='avic')))
    assert 'FAILED' in status and result['changed'] is False
    assert result['msg'].startswith('hyperv: avic') and 'libvirt 8.0.0' in result['msg']
    assert 'QEMU 6.2.0' in result['msg'] and 'nothing was changed' in result['msg']
    assert libvirt.persistent('win10') == original and not (tmp_path / 'backups').exists()
    status, result = run_ansible_module('vfio.avic.avic_domain', json.dumps(args))
    assert 'CHANGED' in status
    hv = ET.fromstring(libvirt.persistent('win10')).find('features/hyperv')
    assert hv.find('synic') is None and hv.find('stimer') is None and hv.find('avic') is None
    assert [n for n in result['notes'] if 'SynIC and stimer are removed instead' in n]


def test_intel_host_changes_nothing(libvirt, host_tree, tmp_path):
    host = host_tree(cpuinfo_name='intel_xeon_gold_6338.txt', kernel='6.1.0-26-amd64')
    libvirt.add('win10', renamed('seed_windows_before.xml', 'win10'))
    original = libvirt.persistent('win10')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='win10', state='fixed',
                                                     x2apic='disable'))
    assert result['changed'] is False and result['backup'] is None
    assert [f['id'] for f in result['findings_before']] == ['not_amd'] == [f['id'] for f in result['findings_after']]
    assert 'not AMD/Hygon' in result['notes'][0]
    assert libvirt.persistent('win10') == original


def test_a_tcg_domain_keeps_its_cpu_model(libvirt, host_tree, tmp_path):
    host = host_tree(**ZEN2)
    libvirt.add('tcg', renamed('not_kvm_cpu_missing.xml', 'tcg'), live=renamed('not_kvm_cpu_missing.xml', 'tcg'),
                state='running')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='tcg', state='fixed'))
    assert result['changed'] is True and result['restart_required'] is True
    cpu = ET.fromstring(libvirt.persistent('tcg')).find('cpu')
    assert cpu.get('mode') == 'custom' and cpu.findtext('model') == 'qemu64'
    assert [n for n in result['notes'] if 'QEMU TCG cannot run the host CPU model' in n]
    assert 'cpu_mode_not_host' in [f['id'] for f in result['findings_after']]


def test_bad_host_facts_and_bad_names_fail_with_a_message(libvirt, host_tree, tmp_path):
    weird = host_tree(**dict(ZEN2, kernel='weird'))
    libvirt.add('lin', renamed('clean_linux.xml', 'lin'))
    result = run_module_direct('avic_domain', domain(weird, tmp_path / 'backups', name='lin', state='fixed'))
    assert result['failed'] is True and 'host kernel' in result['msg'] and "'weird'" in result['msg']
    good = host_tree(**ZEN2)
    result = run_module_direct('avic_domain', domain(good, tmp_path / 'backups', name='--help'))
    assert result['failed'] is True and "is not defined" in result['msg']
    assert [c for c in libvirt.calls() if 'dominfo --domain --help' in c]
    result = run_module_direct('avic_domain', domain(good, tmp_path / 'backups', name='lin',
                                                     uri='qemu+unix:///system?socket=/nonexistent/sock'))
    assert result['failed'] is True and 'libvirt is not reachable' in result['msg']


@pytest.mark.parametrize('args, word', [
    ({'shutdown_timeout': -5}, 'shutdown_timeout'),
    ({'shutdown_timeout': 0}, 'shutdown_timeout'),
    ({'name': ' '}, 'name'),
    ({'name': 'a/b'}, 'name'),
    ({'backup_dir': 'relative/dir'}, 'backup_dir'),
    ({'xml': '<domain><name>other</name></domain>'}, 'xml'),
    ({'xml': '<domain'}, 'xml'),
])
def test_bad_options_are_named_before_libvirt_is_looked_for(tmp_path, host_tree, monkeypatch, args, word):
    """No virsh on PATH at all: the user hears about the bad value, not about libvirt."""
    host = host_tree(**ZEN2)
    monkeypatch.setenv('PATH', os.path.dirname(sys.executable))
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', **dict({'name': 'lin'}, **args)))
    assert result['failed'] is True and result['msg'].startswith(word), result
    assert 'not installed' not in result['msg'] and 'libvirt is not reachable' not in result['msg']
    assert not (tmp_path / 'backups').exists()


def test_a_fixed_definition_that_does_not_start_is_rolled_back_and_the_guest_runs_again(libvirt, host_tree,
                                                                                        tmp_path):
    """The stand-in libvirt refuses to start a definition that requires invtsc, as QEMU does on a
    host without an invariant TSC: the guest must end up running its previous definition."""
    host = host_tree(**ZEN2)
    old = renamed('invtsc_missing.xml', 'win')
    libvirt.add('win', old, live=old, state='running')
    (libvirt.state / 'refuse_start_with').write_text('name="invtsc"')
    result = run_module_direct('avic_domain', domain(host, tmp_path / 'backups', name='win', state='fixed',
                                                     restart=True, shutdown_timeout=5))
    assert result['failed'] is True and 'did not start with the fixed definition' in result['msg'], result
    assert "host doesn't support invariant TSC" in result['msg']
    assert 'runs with it' in result['msg']
    assert libvirt.persistent('win') == old and libvirt.live('win') == old, 'the previous definition runs'
    with open(result['backup']) as handle:
        assert handle.read() == old
    starts = [c for c in libvirt.calls() if ' start ' in ' %s ' % c]
    assert len(starts) == 2, libvirt.calls()
