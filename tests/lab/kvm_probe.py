# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Observe what a real kernel does with AVIC for real KVM guests (runs inside the KVM lab VM, as root).

  python3 kvm_probe.py OUTDIR [CONFIG ...]

For each configuration (default: all of CONFIGS) it reloads kvm_amd with that configuration's
parameters, records the module parameters from sysfs and the kernel's log lines of the load,
then traces the KVM tracepoints in a private tracefs instance while one nested guest (the
payload of `vm.py build --kvm`: the image's kernel and a busybox initramfs) starts under
`qemu-system-x86_64 -accel kvm`, and stops the guest by its pid. It writes, under OUTDIR:

  kernel.json              release, command line, CPU flags, the kvm tracepoints and their formats,
                           kvm_amd's parameters as found and with its defaults (no options)
  <config>/trace.txt       the trace instance's buffer, as tracefs printed it
  <config>/console.log     the guest's serial console
  <config>/meta.json       parameters before and after, dmesg lines, qemu command, timings,
                           whether `modprobe -r kvm_amd` was refused while the guest ran

Nothing is left running and the instance is removed, also on failure; the top-level tracing
state is not touched. The probe runs with one CPU online (the others are taken offline and put
back after, also on failure): loading kvm_amd re-patches kvm.ko's static calls, and a 7.3 lab VM
with two CPUs online under multi-threaded TCG once took an int3 in kvm_arch_vcpu_ioctl_run right
after that load (an emulator's cross-CPU code modification, not what a real host does); with one
CPU online no other CPU can run the text being patched. A nested guest has one vCPU either way. Stdlib only: the VM has nothing but python3.
"""

import json
import os
import platform
import signal
import subprocess
import sys
import time

PAYLOAD = '/var/lib/vfio-avic-lab/payload'
TRACEFS = '/sys/kernel/tracing'
INSTANCE = 'vfio_avic_probe'
# Each tracepoint the runtime check reads, plus kvm_inj_virq (emulated injection) and the SVM
# AVIC exits of kvm_exit (0x401 avic_incomplete_ipi, 0x402 avic_unaccelerated_access).
EVENTS = ('kvm_apicv_inhibit_changed', 'kvm_apicv_update_request', 'kvm_apic_accept_irq',
          'kvm_apicv_accept_irq', 'kvm_inj_virq', 'kvm_avic_incomplete_ipi',
          'kvm_avic_unaccelerated_access', 'kvm_avic_kick_vcpu_slowpath', 'kvm_avic_doorbell',
          'kvm_avic_ga_log', 'kvm_exit')
EXIT_FILTER = 'exit_reason == 0x401 || exit_reason == 0x402'
# name: (kvm_amd parameters, extra QEMU arguments, what ends the sample)
#   'up': the payload printed its banner (the guest booted), then a few seconds more;
#   'time': a fixed time (a guest that AVIC-waits under TCG, which does not implement AVIC).
CONFIGS = {
    'avic_off': ({'avic': '0'}, [], 'up'),
    'force_pit_reinject': ({'avic': '1', 'force_avic': '1'}, [], 'up'),
    'force_pit_discard': ({'avic': '1', 'force_avic': '1'},
                          ['-global', 'kvm-pit.lost_tick_policy=discard'], 'time'),
}
CONFIG_ORDER = ('avic_off', 'force_pit_reinject', 'force_pit_discard')
UP_TIMEOUT = int(os.environ.get('PROBE_UP_TIMEOUT', '240'))
AFTER_UP = 5
FIXED_SAMPLE = int(os.environ.get('PROBE_SAMPLE', '60'))
BANNER = 'vfio-avic-payload up'


def read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def write(path, text):
    with open(path, 'w') as handle:
        handle.write(text)


def sh(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    return {'argv': argv, 'rc': proc.returncode, 'stdout': proc.stdout, 'stderr': proc.stderr.strip()}


def params(module):
    base = '/sys/module/%s/parameters' % module
    if not os.path.isdir(base):
        return None
    return dict((name, (read(os.path.join(base, name), '') or '').strip()) for name in sorted(os.listdir(base)))


CPUS = '/sys/devices/system/cpu'


def offline_other_cpus():
    """Take every CPU but the boot CPU offline; returns the ones this took offline."""
    taken = []
    for name in sorted(os.listdir(CPUS)):
        online = os.path.join(CPUS, name, 'online')
        if name.startswith('cpu') and name[3:].isdigit() and name != 'cpu0' and read(online, '').strip() == '1':
            with open(online, 'w') as handle:
                handle.write('0')
            taken.append(online)
    return taken


def online_again(taken):
    for online in taken:
        with open(online, 'w') as handle:
            handle.write('1')


def kernel_info():
    events_dir = os.path.join(TRACEFS, 'events', 'kvm')
    events = sorted(os.listdir(events_dir)) if os.path.isdir(events_dir) else []
    formats = dict((e, read(os.path.join(events_dir, e, 'format'))) for e in EVENTS if e in events)
    flags = []
    for line in (read('/proc/cpuinfo') or '').splitlines():
        if line.startswith('flags'):
            flags = line.split(':', 1)[1].split()
            break
    return {'release': platform.release(), 'version': read('/proc/version', '').strip(),
            'cmdline': read('/proc/cmdline', '').strip(), 'cpu_flags': flags,
            'kvm_events': events, 'formats': formats,
            'qemu': sh(['qemu-system-x86_64', '--version'])['stdout'].splitlines()[:1]}


def dmesg_since(marker):
    lines = sh(['dmesg'])['stdout'].splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if marker in lines[index]:
            return lines[index + 1:]
    return lines


def reload_kvm_amd(wanted):
    """Reload kvm_amd with exactly these parameters (-C /dev/null: no modprobe.d options)."""
    removed = sh(['modprobe', '-r', 'kvm_amd'])
    marker = 'vfio-avic-probe %d' % time.time()
    write('/dev/kmsg', marker + '\n')
    argv = ['modprobe', '-C', '/dev/null', 'kvm_amd'] + ['%s=%s' % kv for kv in sorted(wanted.items())]
    loaded = sh(argv)
    return removed, loaded, marker


class Instance(object):
    """A private trace instance; removed in close()."""

    def __init__(self):
        self.path = os.path.join(TRACEFS, 'instances', INSTANCE)
        if os.path.isdir(self.path):
            os.rmdir(self.path)
        os.mkdir(self.path)
        self.enabled = []
        write(os.path.join(self.path, 'options', 'record-tgid'), '1')
        write(os.path.join(self.path, 'buffer_size_kb'), '16384')
        for event in EVENTS:
            enable = os.path.join(self.path, 'events', 'kvm', event, 'enable')
            if os.path.exists(enable):
                if event == 'kvm_exit':
                    write(os.path.join(self.path, 'events', 'kvm', event, 'filter'), EXIT_FILTER)
                write(enable, '1')
                self.enabled.append(event)
        write(os.path.join(self.path, 'tracing_on'), '1')

    def read(self):
        write(os.path.join(self.path, 'tracing_on'), '0')
        return read(os.path.join(self.path, 'trace'), '')

    def close(self):
        if not os.path.isdir(self.path):
            return
        try:
            write(os.path.join(self.path, 'tracing_on'), '0')
            for event in self.enabled:
                write(os.path.join(self.path, 'events', 'kvm', event, 'enable'), '0')
        finally:
            os.rmdir(self.path)


def holds_vm(pid):
    """True once the process has created its KVM VM (an anon_inode:kvm-vm descriptor)."""
    fds = '/proc/%d/fd' % pid
    try:
        return any(os.readlink(os.path.join(fds, fd)) == 'anon_inode:kvm-vm' for fd in os.listdir(fds))
    except OSError:
        return False


def stop(proc):
    if proc.poll() is not None:
        return 'exited %s' % proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
        return 'stopped (SIGTERM)'
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return 'killed (SIGKILL)'


def probe(name, outdir):
    wanted, extra, until = CONFIGS[name]
    os.makedirs(os.path.join(outdir, name), exist_ok=True)
    here = os.path.join(outdir, name)
    meta = {'config': name, 'kvm_amd_wanted': wanted, 'qemu_extra': extra, 'until': until}
    meta['kvm_amd_before'] = params('kvm_amd')
    removed, loaded, marker = reload_kvm_amd(wanted)
    meta['unload'] = removed
    meta['load'] = loaded
    meta['kvm_amd'] = params('kvm_amd')
    meta['kvm'] = params('kvm')
    meta['taint'] = int(read('/proc/sys/kernel/tainted', '0').strip())
    meta['dmesg_load'] = dmesg_since(marker)
    console = os.path.join(here, 'console.log')
    for stale in ('console.log', 'trace.txt', 'meta.json'):  # of an earlier run
        if os.path.exists(os.path.join(here, stale)):
            os.unlink(os.path.join(here, stale))
    argv = ['qemu-system-x86_64', '-name', 'vfio-avic-probe-' + name, '-accel', 'kvm', '-cpu', 'host',
            '-m', '256', '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
            '-serial', 'file:' + console, '-kernel', os.path.join(PAYLOAD, 'vmlinuz'),
            '-initrd', os.path.join(PAYLOAD, 'initrd.img'),
            '-append', 'console=ttyS0 quiet panic=-1 payload_idle=600'] + extra
    meta['qemu'] = argv
    instance = Instance()
    meta['events_enabled'] = list(instance.enabled)
    proc = None
    began = time.time()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        meta['qemu_pid'] = proc.pid
        deadline = began + (UP_TIMEOUT if until == 'up' else FIXED_SAMPLE)
        up_at = None
        in_use_checked = False
        while time.time() < deadline and proc.poll() is None:
            if not in_use_checked and holds_vm(proc.pid):
                # a guest holds /dev/kvm: the module cannot be removed (reliability fault 5)
                meta['unload_while_running'] = sh(['modprobe', '-r', 'kvm_amd'])
                meta['kvm_amd_refcnt_while_running'] = (read('/sys/module/kvm_amd/refcnt', '') or '').strip()
                in_use_checked = True
            if up_at is None and BANNER in (read(console, '') or ''):
                up_at = time.time()
                meta['up_seconds'] = round(up_at - began, 1)
                if until == 'up':
                    deadline = up_at + AFTER_UP
            time.sleep(0.5)
        # the trace ends while the guest still runs: tearing a VM down clears its inhibits
        # (the PIT's reinject inhibit goes with the PIT), which a running guest never shows
        meta['running_at_end'] = proc.poll() is None
        trace_text = instance.read()
        meta['sample_seconds'] = round(time.time() - began, 1)
        meta['stopped'] = stop(proc)
        meta['qemu_stderr'] = proc.stderr.read().decode(errors='replace')[-2000:]
        write(os.path.join(here, 'trace.txt'), trace_text)
    finally:
        if proc is not None and proc.poll() is None:
            stop(proc)
        instance.close()
    meta['dmesg_run'] = dmesg_since(marker)
    meta['instance_left'] = os.path.isdir(instance.path)
    with open(os.path.join(here, 'meta.json'), 'w') as handle:
        json.dump(meta, handle, indent=1, sort_keys=True)
        handle.write('\n')
    return meta


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    outdir = argv[1]
    names = argv[2:] or list(CONFIG_ORDER)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.stderr.write('unknown configuration(s) %s; known: %s\n' % (', '.join(unknown), ', '.join(CONFIG_ORDER)))
        return 2
    if not os.path.isdir(os.path.join(TRACEFS, 'events')):
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', TRACEFS], check=True)
    os.makedirs(outdir, exist_ok=True)
    # the top-level buffer is never written; the kernel allocates it at its configured size
    # when an event is enabled anywhere (before: "7 (expanded: 1408)" until then)
    top_before = (read(os.path.join(TRACEFS, 'buffer_size_kb'), '') or '').strip()
    info = kernel_info()
    info['kvm_amd_at_start'] = params('kvm_amd')
    taken = offline_other_cpus()
    try:
        # the module's own defaults: loaded without parameters and without modprobe.d
        removed, loaded, marker = reload_kvm_amd({})
        info['kvm_amd_defaults'] = params('kvm_amd') if loaded['rc'] == 0 else None
        info['dmesg_defaults'] = dmesg_since(marker)
        for name in names:
            meta = probe(name, outdir)
            sys.stderr.write('%s: %s, up %s s, sampled %s s, %s\n' % (
                name, meta['kvm_amd'].get('avic'), meta.get('up_seconds'), meta['sample_seconds'], meta['stopped']))
    finally:
        online_again(taken)
    info['cpus_taken_offline'] = len(taken)
    info['top_buffer_size_kb'] = {
        'before': top_before, 'after': (read(os.path.join(TRACEFS, 'buffer_size_kb'), '') or '').strip()}
    with open(os.path.join(outdir, 'kernel.json'), 'w') as handle:
        json.dump(info, handle, indent=1, sort_keys=True)
        handle.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
