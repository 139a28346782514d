# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest rules: everything that keeps AVIC off for a guest, run once on the guest model (stdlib only).

``audit_summary(summary, host)`` returns findings for a guest model (libvirt/domain_xml.py builds
it from domain XML, guests/qemu.py from a QEMU command line, guests/proxmox.py from a Proxmox VE
config); ``host`` needs ``kernel`` (release
string) and the booleans ``avic`` (AVIC on for the host's kvm_amd) and
``x2avic`` (the CPU has x2AVIC). The ``vfio_avic`` fact of avic_facts is such a
dict. Optional ``nested`` (kvm_amd nested parameter, bool) refines svm,
``x2avic_ext`` (bool: the CPU has X2AVIC_EXT, CPUID 0x8000000A ECX[6], which
/proc/cpuinfo does not show; else read from the fact's ``dmesg.x2avic_max_vcpus``)
refines APIC IDs above 511, ``qemu`` (version string
or tuple) refines Hyper-V passthrough, and ``cpu.vendor`` (from the fact) says
whether the host is AMD/Hygon at all: a plain ``{kernel, avic, x2avic}`` dict
describes an AMD host.

The Hyper-V enlightenment rules are in rules/hyperv.py; RULES runs them in their place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.findings import (
    INFO, INHIBIT, WARNING, finding)
from ansible_collections.vfio.avic.plugins.module_utils.rules import hyperv as hyperv_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules.domain_host import normalise_host
from ansible_collections.vfio.avic.plugins.module_utils.rules.topology import (
    AVIC_MAX_APIC_ID, X2AVIC_EXT_MAX_APIC_ID, X2AVIC_MAX_APIC_ID)

XAPIC_MAX_VCPUS = 255
SEV_ES_POLICY_BIT = 0x4
SEV_TYPES = ('sev', 'sev-snp')
HOST_CPU_MODES = ('host-passthrough', 'host-model', 'maximum')
DISABLED_POLICIES = ('disable', 'forbid')
REQUIRED_POLICIES = ('require', 'force')
# QEMU's CPU feature versions of libvirt's policies: optional turns a feature on where the host
# has it
EXPOSING_POLICIES = REQUIRED_POLICIES + ('optional',)


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


def _version(host):
    return host['kernel']['version']


def _release(host):
    return host['kernel']['release']


def _check_x2apic(s, host, out):
    if _disabled(s, 'x2apic'):
        return
    if s['max_apic_id'] > AVIC_MAX_APIC_ID:
        return  # x2apic must stay: _check_vcpus reports too_many_vcpus where it matters
    caps = host['caps']
    if host['x2avic'] and caps['x2avic']:
        return
    fix = ("Add <feature policy='disable' name='x2apic'/> to <cpu>, unless the guest needs APIC "
           'IDs above 254.')
    if _version(host) < kernel_rules.APICV_INHIBITS:
        out.append(finding(
            'x2apic_exposed', INFO,
            'x2apic is not disabled in the guest CPU, but kernel %s (older than 5.6) has no X2APIC '
            'inhibit: KVM with AVIC on removes x2apic from the guest CPUID itself (known, '
            'svm_cpuid_update).' % _release(host),
            'Nothing to change for this kernel; from 5.6 to 5.19: ' + fix))
        return
    if not caps['x2avic']:
        severity = INHIBIT
        why = ('kernel %s (5.6 to 5.19) inhibits AVIC for the whole VM when the guest CPUID has '
               'x2apic (known, X2APIC; hybrid AVIC replaced it in 6.0)' % _release(host))
    else:
        severity = WARNING
        why = ('the host has no x2AVIC: kernel %s runs an x2APIC guest in a hybrid mode where its '
               'x2APIC register accesses (EOI, ICR) exit to KVM (known from the kernel source); how '
               'much of the AVIC gain remains in that mode is unverified' % _release(host))
    out.append(finding(
        'x2apic_exposed', severity,
        'x2apic is not disabled in the guest CPU (QEMU with KVM exposes it on every model) and %s.'
        % why, fix))


def svm_exposure(s):
    """How svm reaches the guest CPUID: 'explicit' (a require/force/optional feature), 'host'
    (host-passthrough/host-model/maximum), or None. QEMU turns svm off on every named CPU model
    under KVM (kvm_default_props in target/i386/kvm/kvm-cpu.c: svm=off, from "target-i386:
    Disable SVM by default in KVM mode"), so qemu64 (no <cpu>) and EPYC-* models lack it."""
    policy = s['cpu_features'].get('svm')
    if policy in DISABLED_POLICIES:
        return None
    if policy in EXPOSING_POLICIES:
        return 'explicit'
    if s['cpu_mode'] in HOST_CPU_MODES:
        return 'host'
    return None


def _check_svm(s, host, out):
    exposure = svm_exposure(s)
    if exposure is None:
        return
    fix = "Add <feature policy='disable' name='svm'/> to <cpu> unless the guest runs its own VMs."
    if exposure == 'explicit':
        what = ('The guest CPU asks for svm explicitly (nested virtualisation: Windows VBS, WSL2 '
                'and Sandbox need it)')
        keep = ("Keep it if the guest runs its own VMs; else set <feature policy='disable' name='svm'/> "
                'in <cpu>.')
    else:
        what = 'svm is not disabled in the guest CPU (the host CPU mode carries it)'
        keep = fix
    version, release = _version(host), _release(host)
    if host['nested'] is False:
        out.append(finding(
            'svm_exposed', INFO,
            '%s; the host runs kvm_amd with nested=0, so KVM does not expose it and sets no NESTED '
            'inhibit (known).' % what, keep))
        return
    if version >= kernel_rules.NESTED_COEXIST:
        out.append(finding(
            'svm_exposed', INFO,
            '%s: kernel %s inhibits AVIC only on a vCPU while that vCPU runs a nested guest (known, '
            '"KVM: x86: SVM: allow AVIC to co-exist with a nested guest running", 5.19); '
            'the rest of the time AVIC stays on.' % (what, release), keep))
        return
    if host['nested'] is None:
        out.append(finding(
            'svm_exposed', WARNING,
            '%s: kernel %s is older than 5.19, where KVM inhibits AVIC for the whole VM when '
            'kvm_amd runs with nested=1 and the guest CPUID has svm (known); whether nested=1 is '
            'not known here.' % (what, release), keep))
        return
    if version < kernel_rules.APICV_INHIBITS:
        out.append(finding(
            'svm_exposed', WARNING,
            '%s and kvm_amd runs with nested=1: kernel %s (older than 5.6) has no NESTED inhibit, '
            'so AVIC stays on while the guest runs nested guests, which KVM does not support '
            'together before 5.19 (known).' % (what, release), keep))
        return
    out.append(finding(
        'svm_exposed', INHIBIT,
        '%s and kvm_amd runs with nested=1: kernel %s (5.6 to 5.18) inhibits AVIC for the whole '
        'VM (known, NESTED, svm_vcpu_after_set_cpuid).' % (what, release), keep))


def _check_pit(s, host, out):
    pit = s['timers'].get('pit')
    # present='no' does not remove the PIT: libvirt 9.0 still starts QEMU with
    # -global kvm-pit.lost_tick_policy=delay for it (virsh domxml-to-native), and KVM's in-kernel
    # irqchip comes with its PIT; only the tick policy decides.
    if pit is not None and pit.get('tickpolicy') == 'discard':
        return
    if s['ioapic_driver'] == 'qemu':
        return  # split irqchip: QEMU's own PIT, no in-kernel PIT and so no PIT_REINJ
    what = "the PIT timer has tickpolicy=%r" % pit.get('tickpolicy') if pit and pit.get('tickpolicy') \
        else 'the PIT timer has no tickpolicy (the default reinjects missed ticks)'
    out.append(finding(
        'pit_reinject', INHIBIT,
        '%s: KVM inhibits AVIC while the in-kernel PIT is in reinject mode (known, PIT_REINJ).' % what,
        "Set <timer name='pit' tickpolicy='discard'/> in <clock> (present='no' does not remove "
        "the in-kernel PIT)."))


def _check_windows_clock(s, host, out):
    """The clock of a Windows guest (one with <hyperv>): hypervclock and invtsc keep its timers fast."""
    if s['hyperv'] is None:
        return
    if s['timers'].get('hypervclock', {}).get('present') != 'yes':
        out.append(finding(
            'hypervclock_missing', WARNING,
            'Windows guest without the hypervclock timer: its timers get slow once stimer is gone '
            '(reported).',
            "Add <timer name='hypervclock' present='yes'/> to <clock>."))
    # a host without invariant TSC cannot give it: QEMU refuses to start a guest that requires it
    if s['cpu_features'].get('invtsc') not in REQUIRED_POLICIES and host.get('invtsc') is not False:
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


def apic_id_limit(host):
    """(highest APIC ID AVIC can address on this host, whether that depends on X2AVIC_EXT that
    the facts do not show)."""
    if not (host['x2avic'] and host['caps']['x2avic']):
        return AVIC_MAX_APIC_ID, False
    if _version(host) >= kernel_rules.X2AVIC_EXT and host['x2avic_ext'] is not False:
        return X2AVIC_EXT_MAX_APIC_ID, host['x2avic_ext'] is None
    return X2AVIC_MAX_APIC_ID, False


def _check_vcpus(s, host, out):
    top = s['max_apic_id']
    limit, ext_unknown = apic_id_limit(host)
    if top <= AVIC_MAX_APIC_ID or (top <= limit and not ext_unknown) \
            or (ext_unknown and top <= X2AVIC_MAX_APIC_ID):
        return
    what = ('The guest has %d vCPUs with APIC IDs up to %d (QEMU gives each topology level a '
            'power-of-two field)' % (s['vcpus'], top)) if top != s['vcpus'] - 1 \
        else 'The guest has %d vCPUs (APIC IDs up to %d)' % (s['vcpus'], top)
    limits = ('xAPIC AVIC holds APIC IDs 0-254, x2AVIC (Zen 4 or later, kernel >= 6.0) 0-511, '
              '0-4095 only with X2AVIC_EXT on kernel 6.19 or later (known)')
    keep = ' x2apic must stay in its CPU: an xAPIC addresses APIC IDs 0-254 only.'
    fix = ('Use a topology whose highest APIC ID fits (fewer sockets or cores, powers of two), '
           'or run the guest on a host whose AVIC holds it.')
    if ext_unknown and top <= X2AVIC_EXT_MAX_APIC_ID:
        out.append(finding(
            'too_many_vcpus', WARNING,
            '%s: %s. Whether this CPU has X2AVIC_EXT (CPUID 0x8000000A ECX bit 6, not shown in '
            '/proc/cpuinfo) is not known here; without it kernel %s inhibits AVIC for the VM '
            '(PHYSICAL_ID_TOO_BIG).%s' % (what, limits, _release(host), keep), fix))
        return
    if _version(host) >= kernel_rules.PHYSICAL_ID_TOO_BIG:
        why = ('kernel %s inhibits AVIC for the whole VM (known, PHYSICAL_ID_TOO_BIG, "KVM: SVM: '
               'Inhibit AVIC if ID is too big instead of rejecting vCPU creation", 6.17)' % _release(host))
    else:
        why = ('kernel %s (older than 6.17) refuses to create such a vCPU while kvm_amd runs with '
               'avic=1, so the guest does not start (known, avic_init_backing_page)' % _release(host))
    out.append(finding('too_many_vcpus', INHIBIT, '%s: %s; %s.%s' % (what, limits, why, keep), fix))


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
    if _version(host) < kernel_rules.SEV_INHIBIT:
        out.append(finding(
            'sev_guest', WARNING,
            '%s guest: kernel %s is older than 5.19, which has no SEV inhibit: KVM does not keep '
            'AVIC off for it, although AVIC does not support encrypted guests there (known, "KVM: '
            'SVM: Do not activate AVIC for SEV-enabled guest", 5.19).' % (kind, _release(host)),
            'None in the XML: use kernel 5.19 or later, which keeps AVIC off for SEV guests.'))
        return
    out.append(finding(
        'sev_guest', INHIBIT,
        '%s guest: KVM sets the SEV inhibit when it initialises any SEV guest, plain SEV, SEV-ES or '
        'SEV-SNP, so AVIC stays off for it (known, SEV).' % kind,
        'None: this is a property of encrypted guests; report only.'))


RULES = (_check_type, _check_cpu_mode, _check_x2apic, _check_svm, _check_pit, hyperv_rules.check_hyperv,
         _check_windows_clock, _check_irqchip, _check_vcpus, _check_sev)


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


def audit_summary(summary, host):
    """Findings of every rule for a guest model (domain_summary(), or the same keys built from a
    QEMU command line or a Proxmox VE config): the one place the rules run."""
    norm = normalise_host(host)
    if not norm['amd']:
        return [not_amd_finding(norm)]
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
