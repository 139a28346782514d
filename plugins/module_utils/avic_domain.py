# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit a libvirt domain XML for everything that keeps AVIC off (stdlib only).

``audit_domain(xml, host)`` returns findings; ``host`` needs ``kernel`` (release
string) and the booleans ``avic`` (AVIC on for the host's kvm_amd) and
``x2avic`` (the CPU has x2AVIC). The ``vfio_avic`` fact of avic_facts is such a
dict. Optional ``nested`` (kvm_amd nested parameter, bool) refines svm, and
``cpu.vendor`` (from the fact) says whether the host is AMD/Hygon at all: a plain
``{kernel, avic, x2avic}`` dict describes an AMD host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import xml.etree.ElementTree as ET

from ansible_collections.vfio.avic.plugins.module_utils.avic_findings import (
    INFO, INHIBIT, WARNING, finding)
from ansible_collections.vfio.avic.plugins.module_utils import avic_kernel

XAPIC_MAX_VCPUS = 255
SEV_ES_POLICY_BIT = 0x4
SEV_TYPES = ('sev', 'sev-snp')
AMD_VENDORS = ('amd', 'hygon')
HOST_CPU_MODES = ('host-passthrough', 'host-model', 'maximum')
DISABLED_POLICIES = ('disable', 'forbid')
REQUIRED_POLICIES = ('require', 'force')


class DomainXMLError(ValueError):
    """Domain XML that cannot be parsed or is not a libvirt domain."""


class HostFactsError(ValueError):
    """A host description that the audit cannot use."""


def _label(text, name=None):
    if name:
        return 'domain %r' % (name,)
    snippet = ' '.join(str(text)[:60].split())
    return 'domain XML starting %r' % (snippet,)


def parse_domain(xml_text, name=None):
    """Parse domain XML text into an Element; raises DomainXMLError naming the domain."""
    if isinstance(xml_text, ET.Element):
        return xml_text
    if isinstance(xml_text, bytes):
        xml_text = xml_text.decode('utf-8', 'replace')
    if not isinstance(xml_text, str) or not xml_text.strip():
        raise DomainXMLError('%s is empty or not text' % _label(xml_text or '', name))
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise DomainXMLError('%s is not well-formed XML: %s' % (_label(xml_text, name), exc))
    if root.tag != 'domain':
        raise DomainXMLError('%s is not a libvirt domain: root element is <%s>'
                             % (_label(xml_text, name), root.tag))
    return root


def _bool(value):
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in ('y', 'yes', '1', 'true', 'on')


def normalise_host(host):
    """Check and normalise the host description; raises HostFactsError."""
    if not isinstance(host, dict):
        raise HostFactsError('host must be a dict with kernel, avic and x2avic (the vfio_avic fact '
                             'of vfio.avic.avic_facts is one), got %s' % type(host).__name__)
    missing = [k for k in ('kernel', 'avic', 'x2avic') if k not in host]
    if missing:
        raise HostFactsError('host is missing %s: pass the vfio_avic fact of vfio.avic.avic_facts, '
                             'or a dict like {kernel: "6.8.0-45-generic", avic: true, x2avic: false}'
                             % ', '.join(missing))
    try:
        kernel = avic_kernel.parse_release(host['kernel'])
    except avic_kernel.KernelReleaseError as exc:
        raise HostFactsError('host kernel: %s' % exc)
    nested = host.get('nested')
    if nested is None and isinstance(host.get('kvm_amd'), dict):
        nested = (host['kvm_amd'].get('parameters') or {}).get('nested')
    vendor, vendor_id = host_vendor(host)
    return {
        'vendor': vendor,
        'vendor_id': vendor_id,
        'amd': vendor is None or vendor in AMD_VENDORS,
        'kernel': kernel,
        'caps': avic_kernel.capabilities(kernel),
        'avic': _bool(host['avic']),
        'x2avic': _bool(host['x2avic']),
        'nested': None if nested is None else _bool(nested),
    }


def host_vendor(host):
    """(vendor, vendor_id) of the host's CPU from the vfio_avic fact, or (None, None) when the host
    dict does not say (a plain {kernel, avic, x2avic} dict, or cpuinfo that could not be read).

    avic_cpu reports vendor 'unknown' both for unreadable cpuinfo and for other vendors; only a
    vendor_id tells them apart.
    """
    cpu = host.get('cpu') if isinstance(host, dict) else None
    if not isinstance(cpu, dict):
        return None, None
    vendor = str(cpu.get('vendor') or '').strip().lower() or None
    vendor_id = cpu.get('vendor_id') or None
    if vendor in (None, 'unknown') and not vendor_id:
        return None, None
    return vendor or 'unknown', vendor_id


def parse_sev_policy(text):
    """libvirt's <launchSecurity><policy> as an int: always hexadecimal, with or without 0x
    (0x0007, 0007, 7); None when it is not hex."""
    text = (text or '').strip()
    if not text:
        return 0
    try:
        return int(text, 16)
    except ValueError:
        return None


def domain_summary(root):
    """The facts of a domain that the rules look at, as plain data."""
    cpu = root.find('cpu')
    features = {}
    cpu_mode = None
    if cpu is not None:
        cpu_mode = cpu.get('mode', 'custom')
        for feat in cpu.findall('feature'):
            features[feat.get('name')] = feat.get('policy', 'require')
    hyperv = root.find('features/hyperv')
    hv = None
    if hyperv is not None:
        hv = {'mode': hyperv.get('mode', 'custom')}
        for child in hyperv:
            hv[child.tag] = _bool(child.get('state', 'on'))
    timers = {}
    for timer in root.findall('clock/timer'):
        timers[timer.get('name')] = dict(timer.attrib)
    ioapic = root.find('features/ioapic')
    vcpu = root.find('vcpu')
    try:
        vcpus = int(vcpu.text.strip()) if vcpu is not None and vcpu.text else 1
    except ValueError:
        vcpus = 1
    launch = root.find('launchSecurity')
    sev = None
    if launch is not None:
        sev = {'type': launch.get('type'), 'policy': parse_sev_policy(launch.findtext('policy'))}
    return {
        'name': root.findtext('name'),
        'type': root.get('type'),
        'cpu_mode': cpu_mode,
        'cpu_features': features,
        'hyperv': hv,
        'timers': timers,
        'ioapic_driver': ioapic.get('driver') if ioapic is not None else None,
        'vcpus': vcpus,
        'sev': sev,
    }


def _disabled(summary, name):
    return summary['cpu_features'].get(name) in DISABLED_POLICIES


def _check_type(s, host, out):
    if s['type'] != 'kvm':
        out.append(finding(
            'domain_not_kvm', INFO,
            "Domain type is %r, not 'kvm': AVIC only applies to KVM guests." % s['type'],
            "Use <domain type='kvm'> on a KVM host."))


def _check_cpu_mode(s, host, out):
    if s['cpu_mode'] in HOST_CPU_MODES:
        return
    what = 'has no <cpu> element (QEMU default model)' if s['cpu_mode'] is None \
        else "uses cpu mode %r" % s['cpu_mode']
    kvm = s['type'] == 'kvm'
    out.append(finding(
        'cpu_mode_not_host', WARNING,
        'The guest %s: a named model may lack host features the tuned guests rely on, such as '
        'invtsc and topoext (reported: the seed guide uses host-passthrough; AVIC itself does not '
        'depend on the CPU model).%s'
        % (what, '' if kvm else " The domain is not type='kvm', so the fix keeps its model (QEMU TCG "
           'cannot run the host CPU model).'),
        "Use <cpu mode='host-passthrough'> (host-model also carries the flags)" +
        ('.' if kvm else " once the domain is type='kvm'.")))


def _check_x2apic(s, host, out):
    if _disabled(s, 'x2apic'):
        return
    if s['vcpus'] > XAPIC_MAX_VCPUS:
        return  # x2apic must stay: _check_vcpus reports too_many_vcpus where it matters
    caps = host['caps']
    if host['x2avic'] and caps['x2avic']:
        return
    if not caps['x2avic']:
        severity = INHIBIT
        why = ('kernel %s is older than 6.0, which inhibits AVIC for the whole VM when the guest '
               'has x2apic (known)' % host['kernel']['release'])
    else:
        severity = WARNING
        why = ('the host has no x2AVIC: kernel %s runs an x2APIC guest in a hybrid mode where its '
               'x2APIC register accesses (EOI, ICR) exit to KVM (known from the kernel source); how '
               'much of the AVIC gain remains in that mode is unverified' % host['kernel']['release'])
    out.append(finding(
        'x2apic_exposed', severity,
        'x2apic is not disabled in the guest CPU (QEMU with KVM exposes it on every model) and %s.'
        % why,
        "Add <feature policy='disable' name='x2apic'/> to <cpu>, unless the guest needs more "
        'than 255 vCPUs.'))


def _check_svm(s, host, out):
    if _disabled(s, 'svm'):
        return
    explicit = s['cpu_features'].get('svm') in REQUIRED_POLICIES
    # Not only host CPUs carry svm: QEMU's default qemu64 and the EPYC models have it too; KVM
    # passes it to the guest only while kvm_amd runs with nested=1.
    fix = "Add <feature policy='disable' name='svm'/> to <cpu> unless the guest runs its own VMs."
    if host['nested'] is False and not explicit:
        out.append(finding(
            'svm_exposed', INFO,
            'svm is not disabled in the guest CPU (host-passthrough, qemu64 and the EPYC models carry '
            'it); the host runs kvm_amd with nested=0, so KVM does not expose it now (known), but '
            'would after nested=1.', fix))
        return
    if host['caps']['nested_coexist']:
        out.append(finding(
            'svm_exposed', WARNING,
            'svm is exposed to the guest: kernel %s lets AVIC coexist with nested guests (known), '
            'but AVIC stays off while the guest runs its own nested guest.' % host['kernel']['release'],
            fix))
    else:
        out.append(finding(
            'svm_exposed', INHIBIT,
            'svm is exposed to the guest: kernel %s is older than 5.19, where a nested-capable guest '
            'inhibits AVIC (known).' % host['kernel']['release'], fix))


def _check_pit(s, host, out):
    pit = s['timers'].get('pit')
    if pit is not None and (pit.get('present') == 'no' or pit.get('tickpolicy') == 'discard'):
        return
    what = "the PIT timer has tickpolicy=%r" % pit.get('tickpolicy') if pit and pit.get('tickpolicy') \
        else 'the PIT timer has no tickpolicy (the default reinjects missed ticks)'
    out.append(finding(
        'pit_reinject', INHIBIT,
        '%s: KVM inhibits AVIC while the in-kernel PIT is in reinject mode (known, PIT_REINJ).' % what,
        "Set <timer name='pit' tickpolicy='discard'/> in <clock>."))


def _check_hyperv(s, host, out):
    hv = s['hyperv']
    if hv is None:
        return
    avic_on = hv.get('avic', False)
    if hv.get('mode') == 'passthrough':
        if avic_on:
            out.append(finding(
                'hyperv_passthrough', INFO,
                "Hyper-V mode='passthrough' turns on every enlightenment the host offers, SynIC "
                "included; <avic state='on'/> tells Windows not to use AutoEOI, so AVIC can stay on "
                '(known). Passthrough guests cannot migrate safely.',
                "Prefer <hyperv mode='custom'> with the enlightenments listed."))
        else:
            out.append(finding(
                'hyperv_passthrough', INHIBIT,
                "Hyper-V mode='passthrough' turns on every enlightenment the host offers, SynIC "
                'included: Windows then uses AutoEOI, which inhibits AVIC for the whole VM (known, '
                "HYPERV), unless <avic state='on'/> (hv-avic) is also given.",
                "Use <hyperv mode='custom'> with the enlightenments listed and without <synic> and "
                "<stimer>, or add <avic state='on'/> (libvirt >= 8.10)."))
    if hv.get('synic') and not avic_on:
        out.append(finding(
            'hyperv_synic', INHIBIT,
            'Hyper-V SynIC is on without <avic state=\'on\'/>: Windows then uses AutoEOI, which '
            'inhibits AVIC for the whole VM (known, HYPERV).',
            "Add <avic state='on'/> to <hyperv> (libvirt >= 8.10), or remove <synic> and <stimer>."))
    if hv.get('stimer') and not avic_on:
        out.append(finding(
            'hyperv_stimer', WARNING,
            'Hyper-V stimer is on: it needs SynIC, which inhibits AVIC without <avic state=\'on\'/> '
            '(known).',
            "Keep it with <avic state='on'/>, or remove <stimer> together with <synic>."))
    if hv.get('vapic'):
        severity = WARNING if host['avic'] else INFO
        out.append(finding(
            'hyperv_vapic', severity,
            'Hyper-V vapic is on: the paravirtual EOI duplicates what AVIC does in hardware and costs '
            'exits (reported). Some guests with IOMMU AVIC are reported to need it.',
            "Set <vapic state='off'/> where AVIC is active."))
    on = [name for name in ('tlbflush', 'ipi') if hv.get(name)]
    if on:
        out.append(finding(
            'hyperv_tlbflush_ipi', INFO,
            'Hyper-V %s %s on: reported to interfere with AVIC, not confirmed.'
            % (' and '.join(on), 'is' if len(on) == 1 else 'are'),
            'Compare with and without them if AVIC seems inactive; nothing to change by default.'))
    if s['timers'].get('hypervclock', {}).get('present') != 'yes':
        out.append(finding(
            'hypervclock_missing', WARNING,
            'Windows guest without the hypervclock timer: its timers get slow once stimer is gone '
            '(reported).',
            "Add <timer name='hypervclock' present='yes'/> to <clock>."))
    if s['cpu_features'].get('invtsc') not in REQUIRED_POLICIES:
        out.append(finding(
            'invtsc_missing', WARNING,
            'Windows guest without invtsc required: with hypervclock it keeps timers fast '
            '(reported).',
            "Add <feature policy='require' name='invtsc'/> to <cpu>."))


def _check_irqchip(s, host, out):
    if host['caps']['inkernel_irqchip'] or s['ioapic_driver'] == 'qemu':
        return
    out.append(finding(
        'split_irqchip_required', INHIBIT,
        'Kernel %s is older than 5.6: AVIC works only with the split irqchip (known).'
        % host['kernel']['release'],
        "Add <ioapic driver='qemu'/> to <features>, or use kernel 5.6 or later."))


def _check_vcpus(s, host, out):
    if s['vcpus'] <= XAPIC_MAX_VCPUS or (host['x2avic'] and host['caps']['x2avic']):
        return
    out.append(finding(
        'too_many_vcpus', INHIBIT,
        'The guest has %d vCPUs: xAPIC AVIC tables hold APIC IDs 0-254 only, so more need x2AVIC '
        '(Zen 4 or later, kernel >= 6.0) (known). x2apic must stay in its CPU: QEMU refuses APIC '
        'IDs above 254 without x2APIC.' % s['vcpus'],
        'Use at most 255 vCPUs, or run the guest on an x2AVIC host.'))


def _check_sev(s, host, out):
    sev = s['sev']
    if not sev or sev['type'] not in SEV_TYPES:
        return
    if sev['type'] == 'sev-snp':
        kind = 'SEV-SNP'
    elif sev['policy'] is not None and sev['policy'] & SEV_ES_POLICY_BIT:
        kind = 'SEV-ES'
    else:
        kind = 'SEV'
    out.append(finding(
        'sev_guest', INHIBIT,
        '%s guest: KVM sets the SEV inhibit when it initialises any SEV guest, plain SEV, SEV-ES or '
        'SEV-SNP, so AVIC stays off for it (known, SEV).' % kind,
        'None: this is a property of encrypted guests; report only.'))


RULES = (_check_type, _check_cpu_mode, _check_x2apic, _check_svm, _check_pit, _check_hyperv,
         _check_irqchip, _check_vcpus, _check_sev)


def not_amd_finding(host):
    """The one finding for a host whose CPU is not AMD/Hygon (``host`` normalised)."""
    what = host['vendor_id'] or host['vendor']
    if host['vendor'] == 'intel':
        apic = ('Intel has APICv instead (kvm_intel enable_apicv, on by default), which needs none '
                'of these guest settings')
    else:
        apic = 'AVIC is an AMD/Hygon feature'
    return finding(
        'not_amd', INFO,
        'The host CPU is %s, not AMD or Hygon: the AVIC rules do not apply (known; %s).' % (what, apic),
        'Nothing to change: vfio.avic.avic_domain leaves the domain as it is on this host.')


def audit_domain(xml_text, host, name=None):
    """Findings for one domain XML on a host; raises DomainXMLError / HostFactsError.

    On a host whose CPU is not AMD/Hygon the only finding is ``not_amd`` (info).
    """
    root = parse_domain(xml_text, name)
    norm = normalise_host(host)
    if not norm['amd']:
        return [not_amd_finding(norm)]
    summary = domain_summary(root)
    out = []
    for rule in RULES:
        rule(summary, norm, out)
    return out


# Finding ids that say AVIC does not apply to a guest at all (a host without an AMD/Hygon CPU).
NOT_APPLICABLE_IDS = ('not_amd',)


def verdict(findings):
    """'not_applicable' when the only findings say AVIC does not apply to the host, else
    'inhibited' (something inhibits AVIC) or 'ready'."""
    ids = [f.get('id') for f in findings or [] if isinstance(f, dict)]
    if ids and all(i in NOT_APPLICABLE_IDS for i in ids):
        return 'not_applicable'
    return 'inhibited' if any(f.get('severity') == INHIBIT for f in findings or []) else 'ready'
