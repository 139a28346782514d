# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a libvirt domain XML to AVIC-friendly settings (stdlib only).

fix_domain() audits the XML with libvirt_domain.audit_domain() and repairs what each finding
names, as the options choose; everything else of the document (devices, metadata, the
qemu:commandline and other namespaces, comments, element and attribute order) is kept.
What cannot be fixed in the XML (too many vCPUs, SEV guests, a non-KVM domain) stays in
the findings after the fix. On a host whose CPU is not AMD/Hygon nothing is changed.

What this libvirt and QEMU can do comes from libvirt/versions.py (hv_avic_caps()); the edits
themselves, which keep the layout of the rest, from libvirt/domain_edit.py; normalise_xml() gives
the form the fix writes, for diffs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules
from ansible_collections.vfio.avic.plugins.module_utils.findings import INFO, INHIBIT, WARNING
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_edit
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host
from ansible_collections.vfio.avic.plugins.module_utils.rules import topology as apic_topology
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import versions

CHOICES = {
    'x2apic': ('auto', 'disable', 'keep'),
    'svm': ('auto', 'disable', 'keep'),
    'pit': ('auto', 'keep'),
    'hyperv': ('auto', 'avic', 'remove', 'keep'),
    'vapic': ('auto', 'disable', 'keep'),
    'hypervclock': ('auto', 'keep'),
    'invtsc': ('auto', 'keep'),
    'ioapic': ('auto', 'qemu', 'keep'),
    'cpu_mode': ('auto', 'keep'),
}
DEFAULTS = dict((key, 'auto') for key in CHOICES)


class FixOptionError(ValueError):
    """An option value the fixer does not know (named in the message)."""


class HvAvicUnsupported(FixOptionError):
    """hyperv=avic was asked for, but this libvirt/QEMU cannot set <avic state='on'/>, or this
    kernel (older than 5.15) inhibits AVIC for any SynIC whatever it says."""


def check_options(options):
    """Complete ``options`` with defaults; raise FixOptionError for unknown keys or values."""
    merged = dict(DEFAULTS)
    for key, value in (options or {}).items():
        if value is None:
            continue
        if key not in CHOICES:
            raise FixOptionError('unknown option %r (known: %s)' % (key, ', '.join(sorted(CHOICES))))
        if value not in CHOICES[key]:
            raise FixOptionError('%s must be one of %s, got %r' % (key, ', '.join(CHOICES[key]), value))
        merged[key] = value
    return merged


def normalise_xml(xml_text, name=None):
    """``xml_text`` parsed and written back the way fix_domain() writes a changed domain, so a
    diff between the two shows only what the fix changed."""
    return domain_edit.serialise(domain_edit.parse(xml_text, name))


def _host_cpu_allowed(root, opts):
    """A <cpu> created by the fix may be host-passthrough only for a KVM domain whose CPU mode
    the fix may change; otherwise it keeps QEMU's default model, as the domain runs today."""
    return root.get('type') == 'kvm' and opts['cpu_mode'] == 'auto'


def _fix_hyperv(root, ids, severities, host, opts, caps, changes, notes):
    hyperv = root.find('features/hyperv')
    if hyperv is None:
        return
    release = host['kernel']['release']
    old_kernel = host['kernel']['version'] < kernel_rules.HYPERV_AUTOEOI
    if severities.get('hyperv_passthrough') in (INHIBIT, WARNING):
        if old_kernel:
            notes.append("hyperv: mode='passthrough' is left as it is (its enlightenments are whatever "
                         "the host offers): kernel %s (older than 5.15) inhibits AVIC for its SynIC; "
                         "use mode='custom' without synic and stimer to keep AVIC" % release)
        else:
            notes.append("hyperv: mode='passthrough' is left as it is (its enlightenments are whatever "
                         "the host offers): add <avic state='on'/> (or use QEMU 6.2 or later), or use "
                         "mode='custom' without synic and stimer, to keep AVIC")
    strategy = opts['hyperv']
    synic_ids = {'hyperv_synic', 'hyperv_stimer'} & ids
    if strategy == 'avic' and old_kernel and synic_ids:
        raise HvAvicUnsupported(
            "hyperv: avic cannot keep AVIC on kernel %s: before 5.15 KVM inhibits AVIC as soon as "
            "SynIC is activated, whatever <avic state='on'/> says. Use hyperv: remove (or auto) to "
            'drop SynIC and stimer, or kernel 5.15 or later; nothing was changed.' % release)
    if strategy == 'auto' and old_kernel:
        strategy = 'remove'
        if synic_ids:
            notes.append("hyperv: kernel %s (older than 5.15) inhibits AVIC as soon as SynIC is "
                         "activated, whatever <avic state='on'/> says: SynIC and stimer are removed"
                         % release)
    if strategy == 'avic' and caps.get('hv_avic') is False \
            and synic_ids:
        raise HvAvicUnsupported(
            "hyperv: avic needs <avic state='on'/>, which this host cannot use: %s (libvirt %s, "
            "QEMU %s; it needs libvirt >= %d.%d and QEMU >= %d.%d). Use hyperv: remove (or auto) to "
            'drop SynIC and stimer instead; nothing was changed.'
            % ((caps.get('hv_avic_reason'), caps.get('libvirt', 'unknown'), caps.get('qemu', 'unknown'))
               + versions.HV_AVIC_LIBVIRT + versions.HV_AVIC_QEMU))
    if strategy == 'auto':
        strategy = 'avic' if caps.get('hv_avic') else 'remove'
        if not caps.get('hv_avic') and ({'hyperv_synic', 'hyperv_stimer'} & ids):
            notes.append('hyperv: <avic state="on"/> needs libvirt >= 8.10 and a QEMU with hv-avic, '
                         'which this host lacks (%s): SynIC and stimer are removed instead'
                         % (caps.get('hv_avic_reason') or 'not detected'))
    if {'hyperv_synic', 'hyperv_stimer'} & ids:
        if strategy == 'avic':
            if domain_edit.hv_set(hyperv, 'avic', 'on'):
                changes.append("hyperv: <avic state='on'/> added, SynIC and stimer kept")
        elif strategy == 'remove':
            removed = [t for t in ('stimer', 'synic') if domain_edit.hv_remove(hyperv, t)]
            if removed:
                changes.append('hyperv: %s removed' % ' and '.join(removed))
    if 'hyperv_vapic' in ids and opts['vapic'] in ('auto', 'disable'):
        if domain_edit.hv_set(hyperv, 'vapic', 'off'):
            changes.append("hyperv: <vapic state='off'/>")
    if 'hypervclock_missing' in ids and opts['hypervclock'] == 'auto':
        timer = domain_edit.clock_timer(root, 'hypervclock')
        timer.set('present', 'yes')
        changes.append("clock: <timer name='hypervclock' present='yes'/>")
    if 'invtsc_missing' in ids and opts['invtsc'] == 'auto':
        if domain_edit.cpu_feature(root, 'invtsc', 'require', _host_cpu_allowed(root, opts)):
            changes.append("cpu: <feature policy='require' name='invtsc'/>")


def audit_host(host, caps):
    """``host`` with the QEMU version of ``caps`` (hv_avic_caps()) when the host facts do not name
    one: the audit uses it for Hyper-V passthrough. Audit a domain with this host wherever the
    caps are known, so that every audit of it agrees with fix_domain()."""
    qemu = (caps or {}).get('qemu')
    if isinstance(host, dict) and host.get('qemu') is None and qemu and qemu != 'unknown':
        return dict(host, qemu=qemu)
    return host


def fix_domain(xml_text, host, options=None, caps=None, name=None):
    """Return {xml, changed, changes, notes, findings_before, findings_after}.

    ``host`` is what libvirt_domain.audit_domain() takes (the vfio_avic fact); ``caps`` says
    what this libvirt/QEMU can do: hv_avic_caps() of this host's ``virsh version``, or
    {'hv_avic': bool, 'hv_avic_reason': str} (an absent hv_avic means not checked). ``options`` are
    CHOICES keys; ``nested: true`` keeps svm. A fix can reveal another finding (a guest
    without <cpu> gets host-passthrough, which then exposes svm), so passes repeat until
    nothing changes.

    Raises HvAvicUnsupported when ``hyperv: avic`` is asked for a guest with SynIC and
    ``caps`` say (hv_avic: false) this host cannot use it, FixOptionError for bad options,
    libvirt_domain.DomainXMLError / HostFactsError for bad input.
    """
    options = dict(options or {})
    nested = bool(options.pop('nested', False))
    opts = check_options(options)
    host = audit_host(host, caps)
    before = libvirt_domain.audit_domain(xml_text, host, name)
    norm = domain_host.normalise_host(host)
    if not norm['amd']:
        return {'xml': xml_text, 'changed': False, 'changes': [],
                'notes': ['the host CPU is not AMD/Hygon: AVIC does not apply, the domain is left '
                          'as it is'],
                'findings_before': before, 'findings_after': before}
    current, findings, changes, notes = xml_text, before, [], []
    for _pass in range(3):
        step_changes, step_notes = [], []
        root = domain_edit.parse(current, name)
        _apply(root, findings, norm, opts, caps or {}, nested, step_changes, step_notes)
        notes.extend(n for n in step_notes if n not in notes)
        if not step_changes:
            break
        changes.extend(step_changes)
        current = domain_edit.serialise(root)
        findings = libvirt_domain.audit_domain(current, host, name)
    return {'xml': current, 'changed': bool(changes), 'changes': changes, 'notes': notes,
            'findings_before': before, 'findings_after': findings}


def _apply(root, findings, host, opts, caps, nested, changes, notes):
    ids = set(f['id'] for f in findings)
    severities = dict((f['id'], f['severity']) for f in findings)
    acting = (INHIBIT, WARNING)
    kvm = root.get('type') == 'kvm'
    host_cpu = _host_cpu_allowed(root, opts)
    if 'cpu_mode_not_host' in ids and opts['cpu_mode'] == 'auto':
        if kvm:
            cpu = domain_edit.cpu_element(root)
            cpu.set('mode', 'host-passthrough')
            for tag in ('model', 'vendor'):
                for element in cpu.findall(tag):
                    cpu.remove(element)
            changes.append("cpu: mode='host-passthrough'")
        else:
            notes.append("cpu_mode: kept, the domain is type=%r, not 'kvm': QEMU TCG cannot run the "
                         'host CPU model (host-passthrough/host-model)' % root.get('type'))
    summary = libvirt_domain.domain_summary(root)
    top = summary['max_apic_id']
    if top > apic_topology.AVIC_MAX_APIC_ID and opts['x2apic'] in ('auto', 'disable') \
            and root.find("cpu/feature[@name='x2apic']") is None:
        if opts['x2apic'] == 'disable' or 'too_many_vcpus' in ids:
            notes.append('x2apic: kept, the guest has %d vCPUs with APIC IDs up to %d and an xAPIC '
                         'addresses 0-254 only (too_many_vcpus: AVIC for it needs an x2AVIC host)'
                         % (summary['vcpus'], top))
    elif 'x2apic_exposed' in ids and (opts['x2apic'] == 'disable' or (
            opts['x2apic'] == 'auto' and severities['x2apic_exposed'] in acting)):
        if domain_edit.cpu_feature(root, 'x2apic', 'disable', host_cpu):
            changes.append("cpu: <feature policy='disable' name='x2apic'/>")
    if 'svm_exposed' in ids and not nested:
        _fix_svm(root, summary, severities['svm_exposed'], host, opts, host_cpu, changes, notes)
    if 'pit_reinject' in ids and opts['pit'] == 'auto':
        timer = domain_edit.clock_timer(root, 'pit')
        timer.set('tickpolicy', 'discard')
        changes.append("clock: <timer name='pit' tickpolicy='discard'/>")
    _fix_hyperv(root, ids, severities, host, opts, caps, changes, notes)
    ioapic_wanted = opts['ioapic'] == 'qemu' or ('split_irqchip_required' in ids and opts['ioapic'] == 'auto')
    if ioapic_wanted:
        features = domain_edit.child_element(root, 'features', before=('cpu', 'clock', 'on_poweroff', 'devices'))
        ioapic = domain_edit.child_element(features, 'ioapic')
        if ioapic.get('driver') != 'qemu':
            ioapic.set('driver', 'qemu')
            changes.append("features: <ioapic driver='qemu'/> (split irqchip)")


def _fix_svm(root, summary, severity, host, opts, host_cpu, changes, notes):
    """svm: disable turns it off; auto only where it keeps AVIC off (an inhibit, or a warning for
    svm the host CPU mode brings in), never an explicit svm feature that does not inhibit."""
    explicit = domain_rules.svm_exposure(summary) == 'explicit'
    if opts['svm'] == 'disable' or (opts['svm'] == 'auto' and (
            severity == INHIBIT or (severity == WARNING and not explicit))):
        if domain_edit.cpu_feature(root, 'svm', 'disable', host_cpu):
            changes.append("cpu: <feature policy='disable' name='svm'/>")
            if explicit:
                notes.append('svm: the explicit svm feature is disabled because it inhibits AVIC on '
                             'kernel %s: the guest loses nested virtualisation (Windows VBS, WSL2, '
                             'Sandbox); set nested: true to keep it' % host['kernel']['release'])
        return
    if opts['svm'] != 'auto':
        return
    if explicit:
        notes.append('svm: kept, the guest asks for it (nested virtualisation) and on kernel %s it %s'
                     % (host['kernel']['release'],
                        'does not inhibit AVIC' if severity == INFO
                        else 'may keep AVIC off (see svm_exposed); set svm: disable to drop it'))
    else:
        notes.append('svm: kept, on kernel %s it does not keep AVIC off (%s)'
                     % (host['kernel']['release'],
                        'kvm_amd nested=0' if host['nested'] is False
                        else 'AVIC is off only on a vCPU while it runs a nested guest'))
