# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit a QEMU command line for everything that keeps AVIC off (stdlib only).

``qemu_summary(argv)`` turns the arguments of a QEMU process (a list, or the NUL-separated text
of ``/proc/<pid>/cmdline``) into the same guest model that libvirt/domain_xml.py domain_summary() builds
from libvirt domain XML, with QEMU's semantics mapped onto libvirt's:

- ``type``: 'kvm' when the process runs under KVM (``-accel kvm``, ``-machine accel=kvm``,
  ``-enable-kvm``, or a program name ending in 'kvm', which QEMU then runs under KVM), else
  'qemu' (TCG);
- ``cpu_mode``: ``-cpu host`` is 'host-passthrough', ``max`` is 'maximum', a named model is
  'custom', no ``-cpu`` is None (QEMU's default model, as a domain without <cpu>);
- ``cpu_features``: ``+x``/``x``/``x=on`` are 'require', ``-x``/``x=off`` are 'disable'
  (QEMU's spelling with '-' for '_'); the ``+x``/``-x`` forms win over ``x=on/off`` as in
  QEMU (target/i386/cpu.c, x86_cpu_parse_featurestr: plus/minus features are applied after the
  properties);
- ``hyperv``: the ``hv-*``/``hv_*`` CPU properties (``hv-passthrough`` is mode 'passthrough',
  ``hv-apicv`` is ``hv-avic``); ``hv-time`` is libvirt's hypervclock timer;
- ``timers``: ``-global kvm-pit.lost_tick_policy=...`` (or the old ``-no-kvm-pit-reinjection``)
  is the PIT tickpolicy, ``-machine pit=off`` a PIT with present='no', ``-no-hpet`` or
  ``-machine hpet=off`` an HPET with present='no';
- ``ioapic_driver``: ``kernel_irqchip=split`` (``-machine`` or ``-accel kvm``) is 'qemu',
  ``=on`` is 'kvm', ``=off`` is 'off' (no in-kernel local APIC at all);
- ``vcpus``/``topology``: ``-smp`` plus hot-plugged ``-device *-x86_64-cpu``;
- ``sev``: a ``sev-guest``/``sev-snp-guest`` object that ``-machine
  confidential-guest-support=`` (or the old ``memory-encryption=``) uses, with its policy.

``audit_qemu(argv, host)`` builds that model and runs the rules of domain_rules.RULES on it, so
both audits share one rule set.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool
from ansible_collections.vfio.avic.plugins.module_utils.rules import topology as apic_topology


class QemuArgvError(ValueError):
    """A QEMU command line that cannot be read."""


# QEMU options that take no argument (qemu-options.hx, HXCOMM "DEF(..., 0, ...)"); every other
# option takes exactly one. Options only older QEMU knew are kept: a running process may be old.
NO_ARG_OPTIONS = frozenset((
    'S', 's', 'snapshot', 'nodefaults', 'no-defaults', 'no-user-config', 'nographic',
    'no-shutdown', 'no-reboot', 'daemonize', 'enable-kvm', 'no-kvm', 'no-hpet', 'no-acpi',
    'no-kvm-pit-reinjection', 'no-kvm-irqchip', 'no-kvm-pit', 'enable-fips', 'full-screen',
    'usb', 'win2k-hack', 'rtc-td-hack', 'localtime', 'no-fd-bootchk', 'no-quit', 'no-frame',
    'alt-grab', 'ctrl-grab', 'preconfig', 'old-param', 'semihosting', 'enable-sync-profile',
    'only-migratable', 'nouserconfig', 'h', 'help', 'version', 'curses', 'sdl', 'portrait',
    'singlestep', 'no-virtio-balloon',
))
# Without an accelerator option QEMU prefers KVM when its program name ends with "kvm" (system/vl.c
# configure_accelerators: "kvm:tcg", else "tcg:kvm"): Proxmox VE's /usr/bin/kvm (qemu-server adds
# 'accel=tcg' to -machine only for 'kvm: 0', src/PVE/QemuServer.pm config_to_command) and the
# qemu-kvm of RHEL-like distributions, which is also built without TCG.
KVM_DEFAULT_SUFFIX = 'kvm'
HOST_MODELS = {'host': 'host-passthrough', 'max': 'maximum'}
# -cpu properties that are not CPUID features (target/i386/cpu.c x86_cpu_properties).
CPU_PROPERTIES = frozenset((
    'enforce', 'check', 'migratable', 'host-phys-bits', 'host-phys-bits-limit', 'host-cache-info',
    'l3-cache', 'kvm', 'pmu', 'vendor', 'level', 'xlevel', 'xlevel2', 'min-level', 'min-xlevel',
    'model-id', 'family', 'model', 'stepping', 'phys-bits', 'guest-phys-bits', 'tsc-frequency',
    'vmware-cpuid-freq', 'full-cpuid-auto-level', 'legacy-cache', 'cpuid-0xb', 'lbr-fmt',
    'kvm-no-smi-migration', 'ucode-rev', 'apic-id', 'lmce', 'fill-mtrr-mask',
))
# hv-* property names of QEMU (docs/system/i386/hyperv.rst) and libvirt's <hyperv> child names.
HV_ALIASES = {'apicv': 'avic', 'vendor-id': 'vendor_id', 'stimer-direct': 'stimer_direct',
              'tlbflush-ext': 'tlbflush_ext', 'tlbflush-direct': 'tlbflush_direct',
              'xmm-input': 'xmm_input', 'emsr-bitmap': 'emsr_bitmap'}
SEV_OBJECTS = {'sev-guest': ('sev', 0x1), 'sev-snp-guest': ('sev-snp', 0x30000)}
CPU_DEVICE_SUFFIX = '-x86_64-cpu'


def split_argv(value, what='qemu_argv'):
    """A list of arguments from a list, or from the NUL-separated text of /proc/<pid>/cmdline."""
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    if isinstance(value, str):
        if not value.strip('\0 \n'):
            raise QemuArgvError('%s is empty: pass the arguments of a QEMU process' % what)
        if '\0' not in value:
            raise QemuArgvError(
                '%s must be a list of arguments or the NUL-separated text of /proc/<pid>/cmdline '
                "(use slurp and b64decode, or split a shell line yourself), got text without NUL "
                'bytes starting %r' % (what, value[:60]))
        value = value.split('\0')
    if not isinstance(value, (list, tuple)):
        raise QemuArgvError('%s must be a list of arguments or the NUL-separated text of '
                            '/proc/<pid>/cmdline, got %s' % (what, type(value).__name__))
    argv = [str(a) for a in value if a is not None and str(a) != '']
    if not argv:
        raise QemuArgvError('%s is empty: pass the arguments of a QEMU process' % what)
    return argv


def split_opts(text):
    """Split a QemuOpts string at commas; ',,' is a literal comma (util/qemu-option.c)."""
    parts, current, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == ',':
            if text[index + 1:index + 2] == ',':
                current.append(',')
                index += 2
                continue
            parts.append(''.join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append(''.join(current))
    return [p for p in parts if p != '']


def parse_opts(text, implied=None):
    """A QemuOpts (or JSON, '{...}') option argument as a list of (key, value) pairs; a first
    element without '=' is the value of ``implied``, a later one is key=on."""
    text = text or ''
    if text.lstrip().startswith('{'):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            pairs = []
            for key, value in data.items():
                if key == 'qom-type':
                    key = implied or key
                if isinstance(value, bool):
                    value = 'on' if value else 'off'
                pairs.append((str(key), str(value)))
            return pairs
    pairs = []
    for index, part in enumerate(split_opts(text)):
        if '=' in part:
            key, value = part.split('=', 1)
            pairs.append((key, value))
        elif index == 0 and implied:
            pairs.append((implied, part))
        else:
            pairs.append((part, 'on'))
    return pairs


def parse_options(argv):
    """(program, [(option, argument or None)]): argv[0] is the program unless it starts with '-';
    options may be spelt with one or two dashes; positional arguments (a disk image) are dropped."""
    program = None
    rest = list(argv)
    if rest and not rest[0].startswith('-'):
        program = rest.pop(0)
    options = []
    index = 0
    while index < len(rest):
        arg = rest[index]
        index += 1
        if not arg.startswith('-') or arg == '-':
            continue
        name = arg.lstrip('-')
        if '=' in name and arg.startswith('--'):
            name, value = name.split('=', 1)
            options.append((name, value))
            continue
        if name in NO_ARG_OPTIONS:
            options.append((name, None))
            continue
        value = rest[index] if index < len(rest) else None
        index += 1
        options.append((name, value))
    return program, options


def guest_name(argv):
    """The guest name of ``-name`` (libvirt's ``guest=`` or the first element), or None."""
    _program, options = parse_options(argv)
    for name, value in options:
        if name == 'name' and value is not None:
            return dict(parse_opts(value, 'guest')).get('guest')
    return None


def _feature(name):
    return name.replace('_', '-')


def _onoff(value):
    """QEMU's on/off (also yes/no, true/false; an empty value is on), else None."""
    if str(value).strip() == '':
        return True
    return parse_bool(value)


def _parse_cpu(text):
    """(model, features {name: 'require'|'disable'}, hyperv dict or None, hv-time bool or None)."""
    parts = split_opts(text)
    model = parts[0] if parts else ''
    props, plus, minus = [], [], []
    for part in parts[1:]:
        if part.startswith('+'):
            plus.append(_feature(part[1:]))
        elif part.startswith('-'):
            minus.append(_feature(part[1:]))
        elif '=' in part:
            key, value = part.split('=', 1)
            props.append((_feature(key), value))
        else:
            props.append((_feature(part), 'on'))
    # +x/-x win over x=on/off whatever the order, and -x over +x (x86_cpu_parse_featurestr keeps
    # them in plus_features/minus_features, applied after the properties)
    props += [(key, 'on') for key in plus] + [(key, 'off') for key in minus]
    features, hv, hv_time = {}, None, None
    for key, value in props:
        if key.startswith('hv-'):
            hv_name = key[len('hv-'):]
            if hv_name == 'time':
                hv_time = _onoff(value)
                continue
            if hv is None:
                hv = {'mode': 'custom'}
            if hv_name == 'passthrough':
                if _onoff(value):
                    hv['mode'] = 'passthrough'
                continue
            state = _onoff(value)
            hv[HV_ALIASES.get(hv_name, hv_name)] = True if state is None else state
            continue
        if key in CPU_PROPERTIES or key.startswith('x-'):
            continue
        state = _onoff(value)
        if state is not None:
            features[key] = 'require' if state else 'disable'
    return model, features, hv, hv_time


def _global(value):
    """(driver, property, value) of a -global argument, in either spelling."""
    if '=' in value.split('.', 1)[0] or value.startswith('driver='):
        opts = dict(parse_opts(value))
        return opts.get('driver'), opts.get('property'), opts.get('value')
    head, _sep, val = value.partition('=')
    driver, _dot, prop = head.rpartition('.')
    return driver, prop, val


def _smp(value, hotplugged):
    """(vcpus, topology or None) of a -smp argument."""
    opts = dict(parse_opts(value or '', 'cpus'))
    numbers = {}
    for key in ('cpus', 'maxcpus', 'sockets', 'dies', 'clusters', 'cores', 'threads'):
        try:
            numbers[key] = max(int(opts[key]), 0) if key in opts else None
        except ValueError:
            raise QemuArgvError('-smp %r: %s=%r is not a number' % (value, key, opts[key]))
    levels = ('sockets', 'dies', 'clusters', 'cores', 'threads')
    given = [k for k in levels if numbers[k]]
    cpus = numbers['cpus'] or numbers['maxcpus']
    topology = None
    if given:
        topology = dict((k, numbers[k] or 1) for k in levels)
        product = 1
        for key in levels:
            product *= topology[key]
        total = numbers['maxcpus'] or cpus or product
        # QEMU's smp_parse (hw/core/machine-smp.c) fills a missing count from the total: cores
        # first from machine 6.2 on, sockets before; either gives the same highest APIC ID.
        missing = [k for k in ('cores', 'sockets') if not numbers[k]]
        if missing and total > product:
            topology[missing[0]] = max(total // product, 1)
        if not cpus:
            product = 1
            for key in levels:
                product *= topology[key]
            cpus = product
    vcpus = max(cpus or 1, 1) + hotplugged
    return vcpus, topology


def _sev(objects, cgs_ids):
    for pairs in objects:
        opts = dict(pairs)
        kind = SEV_OBJECTS.get(opts.get('qom-type'))
        if kind is None:
            continue
        if opts.get('id') not in cgs_ids:
            continue  # an object that no confidential-guest-support uses changes nothing
        policy = kind[1]
        if opts.get('policy') not in (None, ''):
            try:
                policy = int(str(opts['policy']), 0)
            except ValueError:
                policy = None
        return {'type': kind[0], 'policy': policy}
    return None


def qemu_summary(argv, what='qemu_argv'):
    """The guest model of libvirt/domain_xml.py domain_summary() for a QEMU command line."""
    argv = split_argv(argv, what)
    program, options = parse_options(argv)
    machine, accels, objects, globals_ = {}, [], [], []
    cpu = smp = name = None
    flags = set()
    hotplugged = 0
    for opt, value in options:
        if value is None:
            flags.add(opt)
            continue
        if opt in ('machine', 'M'):
            for key, val in parse_opts(value, 'type'):
                machine[key.replace('-', '_')] = val
        elif opt == 'accel':
            accels.append(dict(parse_opts(value, 'accel')))
        elif opt == 'cpu':
            cpu = value
        elif opt == 'smp':
            smp = value
        elif opt == 'global':
            globals_.append(_global(value))
        elif opt == 'object':
            objects.append(parse_opts(value, 'qom-type'))
        elif opt == 'name':
            name = dict(parse_opts(value, 'guest')).get('guest')
        elif opt == 'device':
            driver = dict(parse_opts(value, 'driver')).get('driver') or ''
            if driver.endswith(CPU_DEVICE_SUFFIX):
                hotplugged += 1

    accel = None
    irqchip = machine.get('kernel_irqchip')
    if accels:
        accel = accels[0].get('accel')
        for key in ('kernel-irqchip', 'kernel_irqchip'):
            if accel == 'kvm' and accels[0].get(key):
                irqchip = accels[0][key]
    elif machine.get('accel'):
        accel = machine['accel'].split(':')[0]
    elif 'enable-kvm' in flags:
        accel = 'kvm'
    elif 'no-kvm' in flags:
        accel = 'tcg'
    elif program and os.path.basename(program).endswith(KVM_DEFAULT_SUFFIX):
        accel = 'kvm'
    if 'no-kvm-irqchip' in flags:
        irqchip = 'off'
    ioapic = None
    if irqchip is not None:
        state = _onoff(irqchip)
        ioapic = 'qemu' if str(irqchip).lower() == 'split' else ('kvm' if state else 'off')

    features, hv, cpu_mode, hv_time = {}, None, None, None
    if cpu is not None:
        model, features, hv, hv_time = _parse_cpu(cpu)
        cpu_mode = HOST_MODELS.get(model, 'custom')

    timers = {}
    for driver, prop, val in globals_:
        if driver == 'kvm-pit' and prop in ('lost_tick_policy', 'lost-tick-policy'):
            timers['pit'] = {'name': 'pit', 'tickpolicy': val}
    if 'no-kvm-pit-reinjection' in flags:
        timers['pit'] = {'name': 'pit', 'tickpolicy': 'discard'}
    if _onoff(machine.get('pit', 'on')) is False or 'no-kvm-pit' in flags:
        timers['pit'] = {'name': 'pit', 'present': 'no'}
    if 'no-hpet' in flags or _onoff(machine.get('hpet', 'on')) is False:
        timers['hpet'] = {'name': 'hpet', 'present': 'no'}
    if hv_time is not None:
        timers['hypervclock'] = {'name': 'hypervclock', 'present': 'yes' if hv_time else 'no'}

    vcpus, topology = _smp(smp, hotplugged)
    cgs = [machine[k] for k in ('confidential_guest_support', 'memory_encryption') if machine.get(k)]
    summary = {
        'name': name,
        'type': 'kvm' if accel == 'kvm' else 'qemu',
        'cpu_mode': cpu_mode,
        'cpu_features': features,
        'hyperv': hv,
        'timers': timers,
        'ioapic_driver': ioapic,
        'vcpus': vcpus,
        'topology': topology,
        'sev': _sev(objects, cgs),
    }
    summary['max_apic_id'] = apic_topology.max_apic_id(summary)
    return summary


def audit_qemu(argv, host, what='qemu_argv'):
    """Findings for one QEMU command line on a host; raises QemuArgvError / HostFactsError."""
    return domain_rules.audit_summary(qemu_summary(argv, what), host)
