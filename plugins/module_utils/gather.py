# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read every AVIC-relevant fact of a host in one pass (stdlib only).

Everything is read below ``root`` (normally ``/``), so a mounted image or a
fixture tree can be inspected the same way. Commands (dmesg, libvirtd
--version, virsh, proxmox-boot-tool status) run only through the ``run`` callable, and only
when root is ``/``.
Nothing here writes anything.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.vfio.avic.plugins.module_utils.rules import cpu as cpu_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import host as host_rules
from ansible_collections.vfio.avic.plugins.module_utils.boot import target as boot_target
from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse
from ansible_collections.vfio.avic.plugins.module_utils.parse import modprobe as modprobe_parse
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules
from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox as proxmox_guest
from ansible_collections.vfio.avic.plugins.module_utils.guests import qemu as qemu_guest
from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host
from ansible_collections.vfio.avic.plugins.module_utils.parse import os_release
from ansible_collections.vfio.avic.plugins.module_utils.trace import processes
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool

FACTS_SCHEMA = 1

# Kernel log lines about AVIC, from the format strings in arch/x86/kvm/svm/avic.c and
# drivers/iommu/amd/init.c. The prefix is "SVM: " before 6.3 and "kvm_amd: " from 6.3
# (kernel_rules.KMSG_MODULE_PREFIX); the patterns match either.
DMESG_PATTERNS = (
    ('avic_enabled', re.compile(r'\bAVIC enabled\b')),
    ('x2avic_enabled', re.compile(r'\bx2AVIC enabled\b')),
    # 5.19-6.17: "AVIC is not supported in CPUID but force enabled" (+ "Your system might
    # crash and burn"); 6.18+: "AVIC unsupported in CPUID but force enabled, your system
    # might crash and burn", then "AVIC enabled".
    ('avic_forced', re.compile(r'AVIC (?:is not supported|unsupported) in CPUID but force enabled')),
    ('force_avic_taint', re.compile(r'Setting dangerous option force_avic')),
    # An SEV-SNP host without HvInUseWrAllowed keeps AVIC off ("KVM: SVM: Disable AVIC on
    # SNP-enabled system without HvInUseWrAllowed feature").
    ('avic_snp_hvinusewr', re.compile(r'AVIC disabled: missing HvInUseWrAllowed')),
    # FW_BUG: x2AVIC in CPUID without AVIC ("Cannot enable x2AVIC, AVIC is unsupported";
    # 6.0-6.x: "Cannot support x2AVIC due to AVIC is disabled").
    ('x2avic_fw_bug', re.compile(r'Cannot (?:enable|support) x2AVIC')),
    ('iommu_vapic', re.compile(r'AMD-Vi: Virtual APIC enabled')),
    ('iommu_intremap', re.compile(r'AMD-Vi: Interrupt remapping enabled')),
    # SNP host whose IOMMU cannot keep guest vAPIC mode with SNP: IOMMU AVIC is off.
    ('iommu_vapic_snp_off', re.compile(r'Force to disable Virtual APIC due to SNP')),
)
# "x2AVIC enabled (max N vCPUs)" (6.19+, X86_FEATURE_X2AVIC_EXT sizes N).
_X2AVIC_MAX_RE = re.compile(r'x2AVIC enabled \(max (\d+) vCPUs\)')
# The prefix in front of "AVIC enabled": "SVM" before 6.3, "kvm_amd" from 6.3.
_AVIC_PREFIX_RE = re.compile(r'(?:^|\]\s*)([A-Za-z_][\w-]*): (?:x2)?AVIC enabled', re.M)


def os_facts(reader):
    """The distribution of the host (parse/os_release.describe()) and whether it runs Proxmox VE."""
    return os_release.describe(os_release.parse(os_release.read(reader.read)),
                               proxmox=reader.which('pveversion') or reader.exists('/etc/pve/.version'))


def _kernel(reader):
    release = (reader.read('/proc/sys/kernel/osrelease') or '').strip()
    if not release and reader.root == '/':
        release = os.uname()[2]
    upstream = None
    for rel in ('/proc/version_signature', '/proc/version'):
        upstream = kernel_rules.upstream_from_proc_version(reader.read(rel))
        if upstream:
            break
    parsed = None
    try:
        parsed = kernel_rules.parse_release(release) if release else None
    except kernel_rules.KernelReleaseError:
        parsed = None
    version = None
    if parsed:
        version = {'major': parsed['major'], 'minor': parsed['minor'], 'patch': parsed['patch'],
                   'distribution': parsed['distribution']}
    return release or None, upstream, version


def _modprobe(reader):
    by_dir = {}
    for directory in modprobe_parse.MODPROBE_DIRS:
        by_dir[directory] = reader.listdir(directory, files_only=True)
    paths = modprobe_parse.modprobe_file_order(by_dir)
    files = [(path, reader.read(path, '')) for path in paths]
    result = modprobe_parse.parse_modprobe(files)
    result['read'] = paths
    mention = set(result['files'])
    result['texts'] = dict((path, text) for path, text in files if path in mention)
    return result


def _iommu(reader, args):
    units = reader.listdir('/sys/class/iommu')
    return {
        'amd_iommu': cmdline_parse.cmdline_value(args, 'amd_iommu'),
        'iommu': cmdline_parse.cmdline_value(args, 'iommu'),
        'amd_iommu_intr': cmdline_parse.cmdline_value(args, 'amd_iommu_intr'),
        'units': units,
        'amd_vi': any(u.startswith('ivhd') for u in units),
    }


def _kernel_packages(reader):
    """Installed linux-image packages from the dpkg database: [{package, release, held}]."""
    text = reader.read('/var/lib/dpkg/status')
    if text is None:
        return None
    out = []
    for stanza in text.split('\n\n'):
        fields = dict(line.split(': ', 1) for line in stanza.splitlines() if ': ' in line and line[0] != ' ')
        name = fields.get('Package', '')
        status = fields.get('Status', '').split()
        if not re.match(r'^linux-image-', name) or len(status) < 3 or status[2] != 'installed':
            continue
        release = name[len('linux-image-'):]
        out.append({'package': name, 'release': release if re.match(r'^\d', release) else None,
                    'held': status[0] == 'hold', 'version': fields.get('Version')})
    return sorted(out, key=lambda p: p['package'])


def _initramfs(reader):
    if reader.which('update-initramfs') or reader.exists('/etc/initramfs-tools'):
        tool = 'initramfs-tools'
    elif reader.which('mkinitcpio') or reader.exists('/etc/mkinitcpio.conf'):
        tool = 'mkinitcpio'
    elif reader.which('dracut') or reader.exists('/etc/dracut.conf'):
        tool = 'dracut'
    else:
        tool = 'unknown'
    texts = [reader.read('/etc/initramfs-tools/modules', ''), reader.read('/etc/mkinitcpio.conf', '')]
    for name in reader.listdir('/etc/dracut.conf.d'):
        texts.append(reader.read('/etc/dracut.conf.d/' + name, ''))
    for name in reader.listdir('/etc/mkinitcpio.conf.d'):
        texts.append(reader.read('/etc/mkinitcpio.conf.d/' + name, ''))
    listed = any(re.search(r'(?m)^[^#\n]*\bkvm[-_]amd\b', t or '') for t in texts)
    command = {'initramfs-tools': 'update-initramfs', 'mkinitcpio': 'mkinitcpio',
               'dracut': 'dracut'}.get(tool)
    return {'tool': tool, 'kvm_amd_listed': listed,
            'command': reader.which(command) if command else None}


def _proxmox_guests(reader, running):
    """Proxmox VE guests defined on this node (/etc/pve/qemu-server/<vmid>.conf), with the
    guest model of their configuration as qemu-server would start them ('_summary')."""
    if not reader.exists(proxmox_guest.CONF_DIR):
        return None
    models = reader.read(proxmox_guest.CPU_MODELS_FILE)
    guests = []
    for entry in reader.listdir(proxmox_guest.CONF_DIR):
        vmid = entry[:-len('.conf')] if entry.endswith('.conf') else ''
        if not vmid.isdigit():
            continue
        text = reader.read('%s/%s' % (proxmox_guest.CONF_DIR, entry))
        summary, error, name = None, None, None
        try:
            conf = proxmox_guest.parse_conf(text, '%s/%s' % (proxmox_guest.CONF_DIR, entry))
            name = conf.get('name') or 'vm%s' % vmid
            summary = proxmox_guest.proxmox_summary(conf, int(vmid), models, '%s/%s' % (proxmox_guest.CONF_DIR, entry))
        except (proxmox_guest.ProxmoxConfigError, qemu_guest.QemuArgvError) as exc:
            error = str(exc)
        guests.append({'vmid': int(vmid), 'name': name, 'running': int(vmid) in running,
                       'error': error, '_summary': summary})
    return guests


def _audit_guests(entries, facts):
    """Replace each entry's '_summary' by its findings on this host (None when not audited)."""
    for entry in entries or []:
        summary = entry.pop('_summary', None)
        entry['findings'] = None
        if summary is None:
            continue
        try:
            entry['findings'] = domain_rules.audit_summary(summary, facts)
        except domain_host.HostFactsError as exc:
            entry['error'] = 'not audited: the host facts are not usable (%s)' % exc


def _container(reader):
    if reader.exists('/run/.containerenv'):
        return 'podman'
    if reader.exists('/.dockerenv'):
        return 'docker'
    marker = (reader.read('/run/systemd/container') or '').strip()
    if marker:
        return marker
    environ = reader.read('/proc/1/environ') or ''
    for item in environ.split('\0'):
        if item.startswith('container='):
            return item.split('=', 1)[1] or 'container'
    return None


def _libvirt(reader, run):
    daemons = [d for d in ('virtqemud', 'libvirtd') if reader.which(d)]
    virsh = reader.which('virsh')
    version = None
    if daemons and run is not None and reader.root == '/':
        rc, out, _err = run([reader.which(daemons[-1]), '--version'])
        match = re.search(r'(\d+\.\d+\.\d+)', out or '')
        if rc == 0 and match:
            version = match.group(1)
    return {'present': bool(daemons or virsh), 'daemons': daemons, 'virsh': virsh,
            'version': version}


def _domains(reader, run, uri):
    """Defined libvirt domains with their persistent XML, through virsh.

    Returns (domains or None, error or None); never raises.
    """
    virsh = reader.which('virsh')
    if not virsh or run is None or reader.root != '/':
        return None, 'virsh is not installed' if not virsh else None
    rc, out, err = run([virsh, '-q', '-c', uri, 'list', '--all', '--name'])
    if rc != 0:
        return None, 'virsh -c %s list failed: %s' % (uri, (err or out or '').strip())
    names = [n.strip() for n in (out or '').splitlines() if n.strip()]
    rc, out, _err = run([virsh, '-q', '-c', uri, 'list', '--name'])
    running = set(n.strip() for n in (out or '').splitlines() if n.strip()) if rc == 0 else set()
    domains = []
    for name in names:
        rc, xml, err = run([virsh, '-c', uri, 'dumpxml', '--inactive', '--', name])
        domains.append({'name': name, 'active': name in running,
                        'xml': xml if rc == 0 else None,
                        'error': None if rc == 0 else (err or '').strip()})
    return domains, None


def parse_dmesg(text):
    """What the kernel log says about AVIC: a dict of booleans (DMESG_PATTERNS), plus
    ``x2avic_max_vcpus`` (int or None) and ``prefix`` ("SVM", "kvm_amd" or None)."""
    text = text or ''
    found = {}
    for key, pattern in DMESG_PATTERNS:
        found[key] = bool(pattern.search(text))
    match = _X2AVIC_MAX_RE.search(text)
    found['x2avic_max_vcpus'] = int(match.group(1)) if match else None
    match = _AVIC_PREFIX_RE.search(text)
    found['prefix'] = match.group(1) if match else None
    return found


def _dmesg(run):
    rc, out, _err = run(['dmesg'])
    if rc != 0:
        return None
    return parse_dmesg(out)


def gather(root='/', run=None, dmesg=True, guests=True, domains=False,
           libvirt_uri='qemu:///system'):
    """All facts as one JSON-ready dict (the ``vfio_avic`` fact)."""
    reader = HostFiles(root=root)
    release, upstream, version = _kernel(reader)
    cpu = cpu_rules.classify_cpu(reader.read('/proc/cpuinfo', ''), release if version else None)
    kvm_amd = modprobe_parse.loaded_module(reader, 'kvm_amd')
    kvm_intel = modprobe_parse.loaded_module(reader, 'kvm_intel')
    modprobe = _modprobe(reader)
    cmdline = (reader.read('/proc/cmdline') or '').strip()
    args = cmdline_parse.split_args(cmdline)
    cmdline_options = cmdline_parse.cmdline_module_options(args)
    configured = dict(modprobe['options'])
    configured.update(cmdline_options)
    facts = {
        'schema': FACTS_SCHEMA,
        'root': reader.root,
        'cpu': cpu,
        'os': os_facts(reader),
        'kernel': release,
        'kernel_upstream': upstream,
        'kernel_version': version,
        'kernel_capabilities': kernel_rules.capabilities(release) if version else None,
        'avic': bool(kvm_amd['loaded'] and parse_bool(kvm_amd['parameters'].get('avic'))),
        'x2avic': cpu['x2avic'],
        'nested': parse_bool(kvm_amd['parameters'].get('nested')),
        'kvm_amd': kvm_amd,
        'kvm_intel': {'loaded': kvm_intel['loaded'],
                      'enable_apicv': parse_bool(
                          kvm_intel['parameters'].get('enable_apicv'))},
        'modprobe': modprobe,
        'cmdline': cmdline,
        'cmdline_kvm_amd': cmdline_options,
        'configured_kvm_amd': configured,
        'pending': host_rules.pending_differences(kvm_amd['parameters'], configured)
        if kvm_amd['loaded'] else {},
        'iommu': _iommu(reader, args),
        'boot_loader': boot_target.boot_loader(reader),
        'boot_cmdline': boot_target.next_boot_cmdline(reader, run if reader.root == '/' else None),
        'kernel_packages': _kernel_packages(reader),
        'initramfs': _initramfs(reader),
        'guests': processes.running_guests(reader) if guests else None,
        'proxmox_guests': None,
        'libvirt': _libvirt(reader, run),
        'container': _container(reader),
        'tainted': None,
        'dmesg': _dmesg(run) if (dmesg and run is not None and reader.root == '/') else None,
    }
    if domains:
        facts['domains'], facts['domains_error'] = _domains(reader, run, libvirt_uri)
    taint = (reader.read('/proc/sys/kernel/tainted') or '').strip()
    facts['tainted'] = int(taint) if taint.isdigit() else None
    findings = host_rules.host_findings(facts)
    facts['findings'] = findings
    facts['status'] = host_rules.host_status(facts, findings)
    if guests:
        running = set(g['vmid'] for g in facts['guests'] if g['source'] == 'proxmox')
        facts['proxmox_guests'] = _proxmox_guests(reader, running)
        _audit_guests(facts['guests'], facts)
        _audit_guests(facts['proxmox_guests'], facts)
    return facts
