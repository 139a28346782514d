# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit a Proxmox VE guest configuration (``/etc/pve/qemu-server/<vmid>.conf``) for AVIC
(stdlib only).

``parse_conf(text)`` reads the current configuration (``key: value`` lines; the ``[snapshot]``
and ``[PENDING]`` sections that follow are left alone; ``#`` lines are the description), and
``conf_text(conf)`` writes one as ``qm config`` prints it.
``proxmox_argv(conf)`` builds the QEMU arguments that decide AVIC as Proxmox VE's qemu-server
starts the guest (src/PVE/QemuServer.pm config_to_command, src/PVE/QemuServer/CPUConfig.pm
get_cpu_options / get_pve_cpu_flags / get_hyperv_enlightenments, src/PVE/QemuServer/Cfg2Cmd/
Timer.pm, src/PVE/QemuServer/Helpers.pm windows_version, release 9.2.6), the user's ``args:``
appended as qemu-server appends them; ``audit_proxmox(text, host)`` reads those arguments with
guests/qemu into the guest model of the libvirt audit and runs the same rules on it.

Only the options that change the guest model are built (the CPU, its flags and Hyper-V
enlightenments, the PIT global, ``-smp``, ``-machine`` accel/irqchip/hpet, the SEV object); the
rest of the real command line (disks, network, display) is not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool
from ansible_collections.vfio.avic.plugins.module_utils.guests import qemu as qemu_guest
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host


# where Proxmox VE keeps the VM configurations and the custom CPU models (pmxcfs)
CONF_DIR = '/etc/pve/qemu-server'
CPU_MODELS_FILE = '/etc/pve/virtual-guest/cpu-models.conf'


class ProxmoxConfigError(ValueError):
    """A Proxmox VE guest configuration that cannot be read."""


_KEY_RE = re.compile(r'^([a-z][a-z0-9_-]*)\s*:\s*(.*?)\s*$')
# Built-in CPU models (CPUConfig.pm $builtin_models_by_arch): reported model and flags.
BUILTIN_MODELS = {
    'x86-64-v2': ('qemu64', '+popcnt;+pni;+sse4.1;+sse4.2;+ssse3'),
    'x86-64-v2-AES': ('qemu64', '+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3'),
    'x86-64-v3': ('qemu64', '+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3;+avx;+avx2;+bmi1;+bmi2;'
                            '+f16c;+fma;+abm;+movbe;+xsave'),
    'x86-64-v4': ('qemu64', '+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3;+avx;+avx2;+bmi1;+bmi2;'
                            '+f16c;+fma;+abm;+movbe;+xsave;+avx512f;+avx512bw;+avx512cd;+avx512dq;'
                            '+avx512vl'),
}
DEPRECATED_MODELS = {'Icelake-Client': 'Icelake-Server',
                     'Icelake-Client-noTSX': 'Icelake-Server-noTSX'}
_FLAG_RE = re.compile(r'^([+-])([a-zA-Z0-9_.-]+)$')
_VERSION_RE = re.compile(r'(\d+)\.(\d+)')


def parse_conf(text, what='qm_conf_text'):
    """The current configuration of a <vmid>.conf as {key: value}; raises ProxmoxConfigError."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    if not isinstance(text, str) or not text.strip():
        raise ProxmoxConfigError('%s must be the text of /etc/pve/qemu-server/<vmid>.conf, got %s'
                                 % (what, 'empty text' if isinstance(text, str) else type(text).__name__))
    conf, bad = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith('['):
            break  # [snapshot], [PENDING], [special:cloudinit]: not the running configuration
        if not stripped or stripped.startswith('#'):
            continue
        match = _KEY_RE.match(stripped)
        if not match:
            bad.append('line %d %r' % (number, stripped[:60]))
            continue
        conf[match.group(1)] = match.group(2)
    if bad:
        raise ProxmoxConfigError('%s is not a Proxmox VE guest configuration (key: value lines): %s'
                                 % (what, ', '.join(bad[:3])))
    return conf


def conf_text(values):
    """A configuration as `qm config` prints it: keys sorted, one `key: value` a line."""
    return ''.join('%s: %s\n' % (key, values[key]) for key in sorted(values))


def parse_property_string(text, default_key):
    """A Proxmox property string (``value,key=value,...``) as a dict (PVE::JSONSchema)."""
    result = {}
    for index, part in enumerate((text or '').split(',')):
        part = part.strip()
        if not part:
            continue
        if '=' in part:
            key, value = part.split('=', 1)
            result[key.strip()] = value.strip()
        elif index == 0:
            result[default_key] = part
    return result


def parse_cpu_models(text):
    """Custom CPU models of /etc/pve/virtual-guest/cpu-models.conf as {name: {key: value}}."""
    models, current = {}, None
    for line in (text or '').splitlines():
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        if not line[0].isspace():
            kind, _sep, name = line.partition(':')
            current = models.setdefault(name.strip(), {}) if kind.strip() == 'cpu-model' else None
            continue
        if current is not None:
            key, _sep, value = line.strip().partition(' ')
            current[key] = value.strip()
    return models


def windows_version(ostype):
    """Helpers.pm windows_version: 5 for XP/2003/2000, 6 for Vista/2008, N for winN, else 0."""
    if ostype in ('wxp', 'w2k3', 'w2k'):
        return 5
    if ostype in ('w2k8', 'wvista'):
        return 6
    match = re.match(r'^win(\d+)$', ostype or '')
    return int(match.group(1)) if match else 0


def _int(conf, key, default, what):
    value = conf.get(key)
    if value in (None, ''):
        return default
    try:
        return int(value)
    except ValueError:
        raise ProxmoxConfigError('%s: %s: %r is not a number' % (what, key, value))


def _cpu_flags(flaglist):
    """{name: op} of a ';'-separated flag list (CPUConfig.pm parse_cpuflag_list)."""
    flags = {}
    for flag in (flaglist or '').split(';'):
        match = _FLAG_RE.match(flag.strip())
        if match:
            flags[match.group(2)] = (match.group(1), None)
    return flags


def _cpu_option(conf, kvm, winversion, guard, cpu_models, what, qemu=None):
    """The -cpu argument of CPUConfig.pm get_cpu_options (x86_64, AMD host)."""
    cputype = 'kvm64' if kvm else 'qemu64'
    cpu, custom, builtin_flags, hv_vendor_id = {}, None, None, None
    hidden = False
    if conf.get('cpu'):
        cpu = parse_property_string(conf['cpu'], 'cputype')
        cputype = cpu.get('cputype', cputype)
        if cputype in BUILTIN_MODELS:
            cputype, builtin_flags = BUILTIN_MODELS[cputype]
        elif cputype.startswith('custom-'):
            name = cputype[len('custom-'):]
            if cpu_models is None or name not in cpu_models:
                raise ProxmoxConfigError(
                    '%s: cpu: %r is a custom CPU model: pass cpu_models, the text of '
                    '/etc/pve/virtual-guest/cpu-models.conf that defines %r' % (what, cputype, name))
            custom = cpu_models[name]
            cputype = custom.get('reported-model') or 'kvm64'
            hidden = parse_bool(custom.get('hidden'), False)
            hv_vendor_id = custom.get('hv-vendor-id')
        cputype = DEPRECATED_MODELS.get(cputype, cputype)
        hidden = parse_bool(cpu.get('hidden'), hidden)
        hv_vendor_id = cpu.get('hv-vendor-id', hv_vendor_id)

    # get_pve_cpu_flags; its cet-* and vmx-mbec flags depend on the installed QEMU (``qemu``,
    # (major, minor) or None when not known) and touch nothing AVIC depends on
    pve = {}
    if cputype == 'kvm64':
        pve['lahf_lm'] = ('+', None)
    if conf.get('ostype') == 'solaris':
        pve['x2apic'] = ('-', None)
    if cputype in ('kvm64', 'kvm32'):
        pve['sep'] = ('+', None)
    if cputype.startswith('Opteron'):
        pve['rdtscp'] = ('-', None)
    if guard(2, 3) and kvm:
        pve['kvm_pv_unhalt'] = ('+', None)
        pve['kvm_pv_eoi'] = ('+', None)
    if qemu is not None and qemu >= (11, 0):
        if winversion >= 11:
            pve['cet-ibt'] = ('-', None)
            pve['cet-ss'] = ('-', None)
        if cputype == 'host' and not guard(11, 0):
            pve['vmx-mbec'] = ('-', None)

    hv = {}
    if kvm:
        hv = _hyperv_flags(winversion, guard, conf.get('bios'), _gpu_passthrough(conf), hv_vendor_id)
    vm_flags = {}
    for name, flag in _cpu_flags(cpu.get('flags')).items():
        # 'nested-virt' resolves to the host's svm or vmx (resolve_cpu_flags); an AMD host: svm
        vm_flags['svm' if name == 'nested-virt' else name] = flag
    forced = {}
    if cputype != 'host' and kvm:
        forced['enforce'] = ('', None)
    if hidden:
        forced['kvm'] = ('', 'off')
    resolved = {}
    for layer in (pve, hv, _cpu_flags(builtin_flags), _cpu_flags((custom or {}).get('flags')),
                  vm_flags, forced):
        resolved.update(layer)
    text = cputype
    level = cpu.get('level') or (custom or {}).get('level')
    if level:
        text += ',level=%s' % level
    for name in sorted(resolved):
        op, value = resolved[name]
        text += ',%s%s%s' % (op, name, '=%s' % value if value else '')
    return text


def _gpu_passthrough(conf):
    return any(key.startswith('hostpci') and 'x-vga=1' in value.replace(' ', '')
               for key, value in conf.items())


def _hyperv_flags(winversion, guard, bios, gpu_passthrough, hv_vendor_id):
    """CPUConfig.pm get_hyperv_enlightenments: Windows Vista and later only; with OVMF only
    Windows 8 and later; hv_synic/hv_stimer (machine >= 2.12) and hv_ipi (>= 3.1) for Windows 7
    and later; never hv-avic."""
    if winversion < 6 or (bios == 'ovmf' and winversion < 8):
        return {}
    flags = {}
    if gpu_passthrough or hv_vendor_id is not None:
        flags['hv_vendor_id'] = ('', hv_vendor_id or 'proxmox')
    if guard(2, 3):
        flags.update({'hv_spinlocks': ('', '0x1fff'), 'hv_vapic': ('', None), 'hv_time': ('', None)})
    else:
        flags['hv_spinlocks'] = ('', '0xffff')
    if guard(2, 6):
        flags.update({'hv_reset': ('', None), 'hv_vpindex': ('', None), 'hv_runtime': ('', None)})
    if winversion >= 7:
        flags['hv_relaxed'] = ('', None)
        if guard(2, 12):
            flags.update({'hv_synic': ('', None), 'hv_stimer': ('', None)})
        if guard(3, 1):
            flags['hv_ipi'] = ('', None)
    return flags


def _sev_object(value, what):
    """CPUConfig.pm get_amd_sev_object, without the host's cbitpos/reduced-phys-bits."""
    sev = parse_property_string(value, 'type')
    kind = sev.get('type')
    if kind in ('std', 'es'):
        policy = 1 << 3
        policy |= 1 if parse_bool(sev.get('no-debug'), False) else 0
        policy |= 2 if parse_bool(sev.get('no-key-sharing'), False) else 0
        policy |= 4 if kind == 'es' else 0
        return 'sev-guest,id=sev0,policy=%#x' % policy
    if kind == 'snp':
        policy = 1 << 17
        policy |= (1 << 16) if parse_bool(sev.get('allow-smt'), True) else 0
        policy |= 0 if parse_bool(sev.get('no-debug'), False) else (1 << 19)
        return 'sev-snp-guest,id=sev0,policy=%#x' % policy
    raise ProxmoxConfigError('%s: amd-sev: type %r is not std, es or snp' % (what, kind))


def proxmox_argv(conf, vmid=None, cpu_models=None, what='qm_conf_text', qemu=None):
    """The AVIC-relevant QEMU arguments qemu-server gives a guest of this configuration.

    ``conf`` is the text of <vmid>.conf or parse_conf()'s dict; ``cpu_models`` the text (or
    parse_cpu_models() dict) of /etc/pve/virtual-guest/cpu-models.conf, needed only for a
    ``custom-`` CPU model; ``qemu`` the installed QEMU version as (major, minor), or None.
    """
    if not isinstance(conf, dict):
        conf = parse_conf(conf, what)
    if isinstance(cpu_models, str):
        cpu_models = parse_cpu_models(cpu_models)
    kvm = parse_bool(conf.get('kvm'), True)
    winversion = windows_version(conf.get('ostype'))
    machine = parse_property_string(conf.get('machine'), 'type')
    if winversion and machine.get('type', 'pc') in ('pc', 'q35'):
        # Machine.pm get_vm_machine: a Windows guest without a machine version is pinned to 5.1,
        # or to its creation QEMU from 9.1 on (meta: creation-qemu=...)
        base = '5.1'
        created = _VERSION_RE.search(parse_property_string(conf.get('meta'), 'x').get('creation-qemu') or '')
        if created and (int(created.group(1)), int(created.group(2))) >= (9, 1):
            base = '%s.%s' % created.groups()
        machine['type'] = '%s-%s' % ('pc-q35' if machine.get('type') == 'q35' else 'pc-i440fx', base)
    match = _VERSION_RE.search(machine.get('type') or '')
    version = (int(match.group(1)), int(match.group(2))) if match else None

    def guard(major, minor):
        # a machine without a version runs the installed QEMU's newest one, which passes every
        # guard qemu-server uses here (>= 6.0 is required)
        return version is None or version >= (major, minor)

    argv = ['kvm']
    if vmid is not None:
        argv += ['-id', str(vmid)]
    argv += ['-name', conf.get('name') or ('vm%s' % vmid if vmid is not None else 'vm')]
    sockets = _int(conf, 'sockets', _int(conf, 'smp', 1, what), what)
    cores = _int(conf, 'cores', 1, what)
    maxcpus = sockets * cores
    vcpus = _int(conf, 'vcpus', maxcpus, what) or maxcpus
    hotplug = conf.get('hotplug', '1')
    hotplug_cpu = hotplug not in ('0', '1') and 'cpu' in hotplug.split(',')
    if hotplug_cpu and guard(2, 7):
        argv += ['-smp', '1,sockets=%d,cores=%d,maxcpus=%d' % (sockets, cores, maxcpus)]
        for index in range(2, vcpus + 1):
            argv += ['-device', 'kvm64-x86_64-cpu,id=cpu%d' % index]
    else:
        argv += ['-smp', '%d,sockets=%d,cores=%d,maxcpus=%d' % (vcpus, sockets, cores, maxcpus)]
    machine_flags = []
    if not kvm:
        machine_flags.append('accel=tcg')
    # Cfg2Cmd/Timer.pm: Windows Vista and later get the PIT in discard mode and no HPET
    if winversion >= 6:
        argv += ['-global', 'kvm-pit.lost_tick_policy=discard']
        machine_flags.append('hpet=off')
    elif conf.get('ostype') == 'l26' and guard(10, 1):
        machine_flags.append('hpet=off')
    argv += ['-cpu', _cpu_option(conf, kvm, winversion, guard, cpu_models, what, qemu)]
    if machine.get('viommu') == 'intel':
        machine_flags.append('kernel-irqchip=split')
    if conf.get('amd-sev'):
        argv += ['-object', _sev_object(conf['amd-sev'], what)]
        machine_flags.append('confidential-guest-support=sev0')
    elif conf.get('intel-tdx'):
        machine_flags.append('kernel_irqchip=split')
    if machine.get('type'):
        machine_flags.append('type=%s' % machine['type'])
    if machine_flags:
        argv += ['-machine', ','.join(machine_flags)]
    if conf.get('args'):
        # QemuServer.pm: PVE::Tools::split_args($conf->{args}), appended last
        try:
            argv += shlex.split(conf['args'])
        except ValueError as exc:
            raise ProxmoxConfigError('%s: args: %s (%s)' % (what, conf['args'], exc))
    return argv


def proxmox_summary(conf_text, vmid=None, cpu_models=None, what='qm_conf_text', qemu=None):
    """The guest model (the keys of libvirt/domain_xml.py domain_summary()) of a Proxmox VE guest configuration."""
    conf = conf_text if isinstance(conf_text, dict) else parse_conf(conf_text, what)
    return qemu_guest.qemu_summary(proxmox_argv(conf, vmid, cpu_models, what, qemu), what)


def audit_proxmox(conf_text, host, vmid=None, cpu_models=None, what='qm_conf_text'):
    """Findings for one <vmid>.conf on a host; raises ProxmoxConfigError / HostFactsError."""
    qemu = domain_host.normalise_host(host)['qemu']
    return domain_rules.audit_summary(proxmox_summary(conf_text, vmid, cpu_models, what, qemu), host)


# --- a fix through the documented interface: qm set and a custom CPU model ---

# What a plan changes for each finding id (only where the finding is not info): per-VM cpu flags
# accept only a fixed list (CPUFlags.pm, no x2apic/svm/hv-avic), so those go into a custom model
# of cpu-models.conf ("flags" takes any [+-]flag, CPUConfig.pm cpu_flag_any_re); the PIT goes
# into args, merged with the user's.
