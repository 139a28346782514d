# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""STAND-IN for Proxmox VE's `qm` (tests only; there is no Proxmox VE host in the labs).

It implements, on plain files, the documented behaviour of the `qm` subcommands the collection
uses, as Proxmox VE's qemu-server 9.2.6 (commit "bump version to 9.2.6") and pve-docs 9.1.3 describe
them (proxmox/qemu-server src/PVE/CLI/qm.pm, src/PVE/API2/Qemu.pm update_vm/vm_config,
src/PVE/QemuServer.pm vmconfig_hotplug_pending; proxmox/pve-docs qm.adoc, qm.conf.adoc,
cpu-models.conf.adoc):

  qm config <vmid> [--current 1]   the configuration of /etc/pve/qemu-server/<vmid>.conf, keys
                                   sorted, "key: value"; pending changes applied unless --current;
                                   no [snapshot] section, no digest, no description (not printed
                                   by the stand-in)
  qm set <vmid> [--key value]... [--delete k1,k2]
                                   writes the file atomically as write_vm_config does (the
                                   description's '#' lines on top, keys sorted, [PENDING], then
                                   the snapshots); on a running VM cpu and args (not hot-pluggable) go
                                   to the [PENDING] section and apply at the next start, as
                                   qemu-server does; refuses unknown keys, a custom CPU model
                                   missing from /etc/pve/virtual-guest/cpu-models.conf, and VM
                                   cpu flags outside the VM-specific set (CPUFlags.pm)
  qm status <vmid>                 "status: running" or "status: stopped"
  qm start <vmid>                  applies pending changes, starts a process whose command line
                                   is "/usr/bin/kvm -id <vmid> -name <name>" followed by the
                                   configuration's args (qemu-server appends args last); the
                                   process only sleeps: it is not QEMU
  qm shutdown <vmid> [--timeout N] [--forceStop 1]
                                   SIGTERM (QEMU's graceful quit), waits up to N seconds
  qm stop <vmid>                   SIGKILL
  qm showcmd                       NOT implemented (building the command line is what the
                                   collection's own code does; a stand-in doing it would test
                                   that code against itself): exits 255 saying so

QM_STANDIN_REFUSE_CPU=<text> makes ``qm start`` fail for a VM whose cpu contains <text> (a fault
for the tests). Installed as an executable ``qm`` with a python3 shebang line put in front (molecule/proxmox,
tests/unit/test_avic_proxmox_guest.py). Every call is appended to /var/log/qm-standin.log.
QM_STANDIN_ROOT (default /) moves every path below a directory, for unit tests.
"""

import os
import re
import shlex
import signal
import sys
import tempfile
import time

ROOT = os.environ.get('QM_STANDIN_ROOT', '/')
CONF_DIR = os.path.join(ROOT, 'etc/pve/qemu-server')
MODELS = os.path.join(ROOT, 'etc/pve/virtual-guest/cpu-models.conf')
RUN_DIR = os.path.join(ROOT, 'run/qemu-server')
LOG = os.path.join(ROOT, 'var/log/qm-standin.log')
# keys of qm.conf(5) the stand-in accepts (a subset of the schema: those the tests use)
KNOWN = {'acpi', 'agent', 'args', 'balloon', 'bios', 'boot', 'bootdisk', 'cores', 'cpu', 'cpulimit',
         'cpuunits', 'description', 'efidisk0', 'hookscript', 'hotplug', 'kvm', 'machine', 'memory',
         'meta', 'name', 'numa', 'onboot', 'ostype', 'scsihw', 'smbios1', 'sockets', 'tablet',
         'vcpus', 'vga', 'vmgenid', 'amd-sev', 'affinity', 'tags', 'startup', 'localtime'}
KNOWN_RE = re.compile(r'^(net|scsi|virtio|sata|ide|hostpci|usb|serial|numa|unused)\d+$')
HOTPLUG = {'onboot', 'name', 'tags', 'description', 'startup', 'hookscript', 'cpulimit', 'cpuunits'}
# CPUFlags.pm: the flags a VM's own cpu option may set
VM_FLAGS = {'nested-virt', 'md-clear', 'pcid', 'spec-ctrl', 'ssbd', 'ibpb', 'virt-ssbd', 'amd-ssbd',
            'amd-no-ssb', 'pdpe1gb', 'hv-tlbflush', 'hv-evmcs', 'aes'}
LINE_RE = re.compile(r'^([a-z][a-z0-9_-]*)\s*:\s*(.*?)\s*$')


def fail(msg, code=255):
    sys.stderr.write(msg.rstrip('\n') + '\n')
    sys.exit(code)


def conf_path(vmid):
    if not vmid.isdigit():
        fail("400 Parameter verification failed.\nvmid: type check ('integer') failed - got '%s'" % vmid)
    path = os.path.join(CONF_DIR, '%s.conf' % vmid)
    if not os.path.exists(path):
        fail("Configuration file 'nodes/localhost/qemu-server/%s.conf' does not exist" % vmid, 2)
    return path


def read_sections(path):
    """[(section name or None, {'comments': [...], 'keys': {...}})]: the current configuration
    first, then [PENDING] and each [snapshot]."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    sections, current = [], (None, {'comments': [], 'keys': {}})
    for line in lines:
        stripped = line.strip()
        if stripped.startswith('['):
            sections.append(current)
            current = (stripped[1:-1], {'comments': [], 'keys': {}})
        elif stripped.startswith('#'):
            current[1]['comments'].append(stripped)
        elif LINE_RE.match(stripped):
            match = LINE_RE.match(stripped)
            current[1]['keys'][match.group(1)] = match.group(2)
    sections.append(current)
    return sections


def write_sections(path, sections):
    """The file as qemu-server's write_vm_config writes it: the description as '#' lines on top,
    the keys sorted, then [PENDING], then the snapshots sorted by name."""
    def raw(section):
        return ''.join('%s\n' % c for c in section['comments']) + ''.join(
            '%s: %s\n' % (k, section['keys'][k]) for k in sorted(section['keys']))
    text = raw(sections[0][1])
    pending = [s for n, s in sections if n == 'PENDING' and s['keys']]
    if pending:
        text += '\n[PENDING]\n' + raw(pending[0])
    for name, section in sorted((n, s) for n, s in sections[1:] if n != 'PENDING'):
        text += '\n[%s]\n' % name + raw(section)
    fd, tmp = tempfile.mkstemp(prefix='.qm-standin-', dir=os.path.dirname(path))
    with os.fdopen(fd, 'w') as handle:
        handle.write(text)
    os.chmod(tmp, 0o640)
    os.rename(tmp, path)


def section(sections, name):
    for index, (each, body) in enumerate(sections):
        if each == name:
            return body
    body = {'comments': [], 'keys': {}}
    sections.append((name, body))
    return body


# the started VM's argv[0], as qemu-server's command line names QEMU
VM_BINARY = '/usr/bin/kvm'


def pid_of(vmid):
    try:
        with open(os.path.join(RUN_DIR, '%s.pid' % vmid)) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        # the VM's own command line, once the sleeper has rewritten it (until then the
        # interpreter's "-c <program>" stands between VM_BINARY and -id)
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            if not handle.read().startswith(('%s\0-id\0%s\0' % (VM_BINARY, vmid)).encode()):
                return None
        return pid
    except (IOError, OSError, ValueError):
        return None


def custom_models():
    names, current = set(), None
    try:
        with open(MODELS) as handle:
            for line in handle:
                if line.startswith('cpu-model:'):
                    current = line.split(':', 1)[1].strip()
                    names.add(current)
    except (IOError, OSError):
        pass
    return names


def check_value(key, value):
    if key == 'cpu':
        parts = value.split(',')
        cputype = parts[0] if '=' not in parts[0] else 'kvm64'
        if cputype.startswith('custom-') and cputype[len('custom-'):] not in custom_models():
            fail("400 Parameter verification failed.\ncpu: value does not match the regex pattern "
                 "(custom cputype '%s' not found)" % cputype[len('custom-'):])
        for part in parts:
            if part.startswith('flags='):
                for flag in part[len('flags='):].split(';'):
                    if flag and flag[1:] not in VM_FLAGS:
                        fail("400 Parameter verification failed.\ncpu: value does not match the "
                             "regex pattern (flag '%s' is not allowed in a VM-specific config)" % flag)


def options(args):
    """{key: value} of --key value pairs (also -key value, as qm accepts)."""
    result, index = {}, 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith('-') or index + 1 >= len(args):
            fail('400 unable to parse option: %s' % arg)
        result[arg.lstrip('-')] = args[index + 1]
        index += 2
    return result


def cmd_config(vmid, args):
    opts = options(args)
    sections = read_sections(conf_path(vmid))
    values = dict(sections[0][1]['keys'])
    if opts.get('current') not in ('1', 'true'):
        extra = dict(section(sections, 'PENDING')['keys'])
        for key in [k for k in extra.pop('delete', '').split(',') if k]:
            values.pop(key, None)
        values.update(extra)
    values.pop('digest', None)
    for key in sorted(values):
        print('%s: %s' % (key, values[key]))


def cmd_set(vmid, args):
    path = conf_path(vmid)
    opts = options(args)
    delete = [k for k in opts.pop('delete', '').split(',') if k]
    for key in list(opts) + delete:
        if key not in KNOWN and not KNOWN_RE.match(key):
            fail('400 Parameter verification failed.\n%s: property is not defined in schema and '
                 'the schema does not allow additional properties' % key)
    for key, value in opts.items():
        check_value(key, value)
    sections = read_sections(path)
    running = pid_of(vmid) is not None
    current, pending = sections[0][1]['keys'], section(sections, 'PENDING')['keys']
    pending_delete = [k for k in pending.pop('delete', '').split(',') if k]
    for key, value in opts.items():
        if running and key not in HOTPLUG:
            pending[key] = value
            pending_delete = [k for k in pending_delete if k != key]
        else:
            current[key] = value
    for key in delete:
        if running and key not in HOTPLUG:
            pending_delete.append(key)
        else:
            current.pop(key, None)
    # qemu-server's cleanup_pending: a pending value equal to the current one is dropped
    for key in [k for k, v in pending.items() if current.get(k) == v]:
        del pending[key]
    if pending_delete:
        pending['delete'] = ','.join(pending_delete)
    write_sections(path, sections)


def apply_pending(path):
    sections = read_sections(path)
    current, pending = sections[0][1]['keys'], dict(section(sections, 'PENDING')['keys'])
    if not pending:
        return
    for key in [k for k in pending.pop('delete', '').split(',') if k]:
        current.pop(key, None)
    current.update(pending)
    section(sections, 'PENDING')['keys'].clear()
    write_sections(path, sections)


# the started "VM": a sleeping Python process that rewrites its own argument area, so that
# /proc/<pid>/cmdline is the VM's command line and nothing else
SLEEPER = r'''
import ctypes, signal, sys, time
with open('/proc/self/stat') as handle:
    fields = handle.read().rsplit(')', 1)[1].split()
arg_start, arg_end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
wanted = b'\0'.join(a.encode() for a in [sys.orig_argv[0]] + sys.argv[1:]) + b'\0'
ctypes.memset(arg_start, 0, arg_end - arg_start)
ctypes.memmove(arg_start, wanted, min(len(wanted), arg_end - arg_start))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(3600)
'''


def cmd_start(vmid, args):
    path = conf_path(vmid)
    if pid_of(vmid) is not None:
        fail('VM %s already running' % vmid)
    apply_pending(path)
    values = read_sections(path)[0][1]['keys']
    refuse = os.environ.get('QM_STANDIN_REFUSE_CPU')
    if refuse and refuse in values.get('cpu', ''):
        # a fault for the tests: QEMU refusing the CPU, as it refuses a flag it does not know
        fail("start failed: QEMU exited with code 1 (qemu-system-x86_64: can't apply the CPU '%s')"
             % values['cpu'])
    argv = [VM_BINARY, '-id', vmid, '-name', values.get('name') or 'vm%s' % vmid]
    if values.get('args'):
        argv += shlex.split(values['args'])
    os.makedirs(RUN_DIR, exist_ok=True)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        # argv[0] is not the interpreter: tell it where its standard library is
        os.execve(sys.executable, [argv[0], '-c', SLEEPER] + argv[1:],
                  dict(os.environ, PYTHONHOME=sys.base_prefix))
    with open(os.path.join(RUN_DIR, '%s.pid' % vmid), 'w') as handle:
        handle.write('%d\n' % pid)
    # wait until the process shows the VM's command line
    for _i in range(400):
        if pid_of(vmid) == pid:
            return
        time.sleep(0.05)
    fail('start failed: the process of VM %s did not come up' % vmid)


def cmd_shutdown(vmid, args, kill=False):
    conf_path(vmid)
    opts = options(args)
    pid = pid_of(vmid)
    if pid is None:
        if kill:
            return
        fail('VM %s not running' % vmid)
    timeout = int(opts.get('timeout', '600'))
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline or kill:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            pass
        if pid_of(vmid) is None:
            break
        time.sleep(0.1)
    else:
        if opts.get('forceStop') in ('1', 'true'):
            os.kill(pid, signal.SIGKILL)
        else:
            fail('VM quit/powerdown failed')
    try:
        os.unlink(os.path.join(RUN_DIR, '%s.pid' % vmid))
    except OSError:
        pass


def main(argv):
    os.makedirs(os.path.dirname(LOG), exist_ok=True)
    with open(LOG, 'a') as log:
        log.write('qm %s\n' % ' '.join(shlex.quote(a) for a in argv))
    if len(argv) < 2:
        fail('400 not enough arguments\nqm <command> <vmid> [OPTIONS]')
    command, vmid, rest = argv[0], argv[1], argv[2:]
    if command == 'config':
        cmd_config(vmid, rest)
    elif command == 'set':
        cmd_set(vmid, rest)
    elif command == 'status':
        conf_path(vmid)
        print('status: %s' % ('running' if pid_of(vmid) is not None else 'stopped'))
    elif command == 'start':
        cmd_start(vmid, rest)
    elif command == 'shutdown':
        cmd_shutdown(vmid, rest)
    elif command == 'stop':
        cmd_shutdown(vmid, rest, kill=True)
    elif command == 'showcmd':
        fail('qm showcmd is not implemented by this stand-in (see its header)')
    else:
        fail("unknown command 'qm %s'" % command)


if __name__ == '__main__':
    main(sys.argv[1:])
