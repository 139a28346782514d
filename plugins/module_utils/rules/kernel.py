# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel release parsing and the kernel rules for AVIC (stdlib only).

Distribution kernels backport fixes, so these rules are a floor and warnings,
never a reason to refuse a kernel a user pinned on purpose: callers make every
refusal overridable.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils.findings import (
    INFO, INHIBIT, WARNING, finding)

# Milestones (major, minor). Sources: torvalds/linux commits and pull requests named here.
SVM_AVIC = (4, 7)          # "KVM: x86: Introduce SVM AVIC support" (known)
# IOMMU AVIC needs both halves: the AMD IOMMU driver's guest vAPIC mode ("iommu/amd:
# Introduce AMD IOMMU AVIC support", 4.8) and KVM's side, posting device interrupts into
# the vCPU's vAPIC ("svm: Implements update_pi_irte hook to setup posted interrupt"), which
# came with the kvm-4.9-1 pull ("IOMMU part of AMD's AVIC for vmexit-less interrupt
# delivery"). (known)
IOMMU_AVIC = (4, 9)
INKERNEL_IRQCHIP = (5, 6)  # AVIC with the in-kernel irqchip (known)
NESTED_COEXIST = (5, 19)   # AVIC coexists with nested guests; force_avic (known)
X2AVIC = (6, 0)            # x2AVIC on Zen 4 (known)
# kvm_amd and kvm_intel print their log lines with the module name ("kvm_amd: AVIC
# enabled") instead of "SVM: " ("KVM: x86: Unify pr_fmt to use module name for all KVM
# modules", 8d20bd638167, kvm 6.3). (known)
KMSG_MODULE_PREFIX = (6, 3)
# /sys/module/kvm_amd/parameters/enable_device_posted_irqs: whether KVM posts device
# interrupts (IOMMU AVIC) at all ("KVM x86 misc changes for 6.16: Add a module param to
# control and enumerate support for device posted interrupts"). (known)
DEVICE_POSTED_IRQS_PARAM = (6, 16)
# The IRQ-bypass/AVIC rework merged for 6.17: kvm_amd enable_ipiv ("KVM: SVM: Add
# enable_ipiv param, never set IsRunning if disabled", d921665e01ba), IPI virtualisation
# off on family 17h for erratum #1235 ("KVM: SVM: Disable (x2)AVIC IPI virtualization if
# CPU has erratum #1235", 8de4a1c8164e), and a too-big APIC ID inhibits AVIC instead of
# failing vCPU creation ("KVM: SVM: Inhibit AVIC if ID is too big instead of rejecting
# vCPU creation", PHYSICAL_ID_TOO_BIG). (known)
ENABLE_IPIV_PARAM = (6, 17)
ERRATUM_1235_FAMILY_17H = (6, 17)
PHYSICAL_ID_TOO_BIG = (6, 17)
# Hygon family 18h got the same erratum #1235 workaround later ("KVM: SVM: Disable AVIC IPI
# virtualization on Hygon Family 18h (erratum #1235)", 9a12fa5213cf, 7.1-rc5), queued for
# 7.0.y and for 6.18.y after 6.18.34 (linux-stable-rc linux-6.18.y), so first in 6.18.35.
# (known)
ERRATUM_1235_HYGON = (7, 1)
ERRATUM_1235_HYGON_BACKPORTS = {(6, 18): 35}
AVIC_AUTO = (6, 18)        # avic=auto: "KVM: SVM: Enable AVIC by default for Zen4+ if x2AVIC is support" (known)
# "AVIC unsupported in CPUID but force enabled, your system might crash and burn" on one
# line, "AVIC enabled" printed after it (avic_want_avic_enabled(), kvm-x86 svm for 6.18);
# before, two lines "AVIC is not supported in CPUID but force enabled" + "Your system
# might crash and burn" and no "AVIC enabled". (known)
FORCED_MESSAGE_ONE_LINE = (6, 18)
# x2AVIC with 4K physical APIC ID tables (X86_FEATURE_X2AVIC_EXT): dmesg "x2AVIC enabled
# (max N vCPUs)". (known: kvm-x86 svm for 6.19)
X2AVIC_EXT = (6, 19)
# The APICv inhibit framework ("kvm: x86: Introduce APICv inhibit reason bits", 4e19c36f2df8,
# 5.6) with the VM-wide NESTED inhibit for a guest with SVM in its CPUID while kvm_amd runs
# with nested=1 ("svm: Deactivate AVIC when launching guest with nested SVM support",
# 9a0bf0543069) and the VM-wide X2APIC inhibit; before it, KVM with AVIC on hid x2apic from
# the guest CPUID. (known)
APICV_INHIBITS = (5, 6)
# HYPERV only while a SynIC SINT uses AutoEOI; KVM_GET_SUPPORTED_HV_CPUID always reports
# HV_DEPRECATING_AEOI_RECOMMENDED ("KVM: x86: hyper-v: Deactivate APICv only when AutoEOI
# feature is in use", 5.15). Before, activating SynIC inhibited AVIC permanently. (known)
HYPERV_AUTOEOI = (5, 15)
# The SEV inhibit, set in sev_guest_init() ("KVM: SVM: Do not activate AVIC for SEV-enabled
# guest", kvm pull for 5.19); before it AVIC was not kept off for SEV guests. (known)
SEV_INHIBIT = (5, 19)

MINIMUM = SVM_AVIC
RECOMMENDED = INKERNEL_IRQCHIP

# Stable series with a known AVIC bug and the first patch level that fixes it.
# 5.6.0-5.6.12: "kvm: ioapic: Lazy update IOAPIC EOI" (f458d039db7e, 5.6) lets a
# level-triggered interrupt (for example VFIO INTx of a passed-through device) re-enter
# the in-kernel IOAPIC without end with AVIC on, until the host kernel stack overflows;
# fixed by "kvm: ioapic: Restrict lazy EOI update to edge-triggered interrupts"
# (8be8f932e3db, 5.7-rc5; stable "[PATCH 5.6 109/118]", 5.6.13). 5.4 never had the
# buggy code, so it needs no warning. (known)
KNOWN_ISSUES = (
    {'series': (5, 6), 'fixed_in': 13,
     'what': 'the fix "kvm: ioapic: Restrict lazy EOI update to edge-triggered interrupts" '
             '(without it, a level-triggered interrupt such as VFIO INTx of a passed-through '
             'device recurses in the in-kernel IOAPIC with AVIC on until the host kernel stack '
             'overflows)'},
)

_RELEASE_RE = re.compile(r'^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(.*?)\s*$')
# The upstream version that Debian and Ubuntu print in /proc/version and
# /proc/version_signature ("Debian 6.1.112-1", "Ubuntu 5.4.0-42.46-generic 5.4.44").
_DEBIAN_UPSTREAM_RE = re.compile(r'Debian (\d+\.\d+(?:\.\d+)?)[-+~][^ )]* \(\d{4}-\d\d-\d\d\)')
_UBUNTU_SIGNATURE_RE = re.compile(r'^Ubuntu \S+ (\d+\.\d+(?:\.\d+)?)\s*$')


class KernelReleaseError(ValueError):
    """A kernel release string that cannot be parsed."""


def parse_release(release):
    """Parse a kernel release ('6.8.0-45-generic') into a dict.

    Returns {release, major, minor, patch, suffix, version: (major, minor, patch),
    distribution: bool (a distribution suffix is present, so the patch level may
    be an ABI number rather than the upstream one)}. Raises KernelReleaseError
    with the string when it is not a kernel release.
    """
    if not isinstance(release, str):
        raise KernelReleaseError('kernel release must be a string like "6.8.0-45-generic", got %r'
                                 % (release,))
    match = _RELEASE_RE.match(release)
    if not match:
        raise KernelReleaseError('cannot parse kernel release %r: expected MAJOR.MINOR[.PATCH][suffix], '
                                 'for example "6.1.0-26-amd64"' % (release,))
    major, minor = int(match.group(1)), int(match.group(2))
    patch = int(match.group(3)) if match.group(3) is not None else 0
    suffix = match.group(4) or ''
    if suffix and not re.match(r'^[-+._~]', suffix):
        raise KernelReleaseError('cannot parse kernel release %r: unexpected %r after the version'
                                 % (release, suffix))
    return {
        'release': release.strip(),
        'major': major,
        'minor': minor,
        'patch': patch,
        'suffix': suffix,
        'version': (major, minor, patch),
        'distribution': bool(suffix.strip('-+._~')),
    }


def upstream_from_proc_version(text):
    """The upstream kernel version in /proc/version or /proc/version_signature text, or None."""
    if not isinstance(text, str):
        return None
    match = _UBUNTU_SIGNATURE_RE.match(text.strip())
    if match:
        return match.group(1)
    match = _DEBIAN_UPSTREAM_RE.search(text)
    if match:
        return match.group(1)
    return None


def version_tuple(value):
    """(major, minor, patch) from a release string, a tuple/list or a parsed dict."""
    if isinstance(value, dict):
        return tuple(value['version'])
    if isinstance(value, (tuple, list)):
        parts = [int(p) for p in value] + [0, 0, 0]
        return tuple(parts[:3])
    return parse_release(value)['version']


def at_least(release, minimum):
    """True when a release (string, tuple or parsed) is at least ``minimum``."""
    return version_tuple(release) >= version_tuple(minimum)


def capabilities(release):
    """What a kernel release can do for AVIC, as booleans."""
    version = version_tuple(release)
    return {
        'svm_avic': version >= SVM_AVIC,
        'iommu_avic': version >= IOMMU_AVIC,
        'inkernel_irqchip': version >= INKERNEL_IRQCHIP,
        'nested_coexist': version >= NESTED_COEXIST,
        'force_avic': version >= NESTED_COEXIST,
        'x2avic': version >= X2AVIC,
        'avic_auto': version >= AVIC_AUTO,
    }


def _fmt(version):
    return '.'.join(str(p) for p in version)


def erratum_1235_workaround(release, vendor, family):
    """Whether a kernel turns AVIC IPI virtualisation off for erratum #1235 on this CPU.

    True when it does, False when the CPU has the erratum and the kernel predates the
    workaround (the erratum is live: missed wake-ups of blocked vCPUs), None when the CPU
    is not affected (only AMD family 17h, Zen 1/Zen 2, and Hygon family 18h are).
    """
    version = version_tuple(release)
    if vendor == 'amd' and family == 0x17:
        return version >= ERRATUM_1235_FAMILY_17H
    if vendor == 'hygon' and family == 0x18:
        if version >= ERRATUM_1235_HYGON:
            return True
        first = ERRATUM_1235_HYGON_BACKPORTS.get(version[:2])
        return first is not None and version[2] >= first
    return None


def avic_auto_enables(cpu, npt=True, force_avic=False):
    """Whether kvm_amd avic=auto (6.18+) turns AVIC on for a CPU (a cpu_rules.classify_cpu dict).

    The kernel's avic_want_avic_enabled(): x2AVIC in CPUID and Zen 4 or a later family
    (the synthetic ZEN4 flag, or family above 0x19), then nested paging on and AVIC in
    CPUID (or force_avic). An SEV-SNP host without HvInUseWrAllowed still turns it off,
    which /proc/cpuinfo cannot tell: the kernel log says so.
    """
    cpu = cpu or {}
    family = cpu.get('family')
    zen4_or_later = cpu.get('microarchitecture') == 'zen4' or (
        cpu.get('vendor') == 'amd' and family is not None and family > 0x19)
    return bool(cpu.get('x2avic') and zen4_or_later and npt and (cpu.get('avic') or force_avic))


def _known_issue_findings(parsed, upstream):
    findings = []
    series = (parsed['major'], parsed['minor'])
    for issue in KNOWN_ISSUES:
        if series != issue['series']:
            continue
        patch = parsed['patch']
        where = parsed['release']
        if upstream:
            up = version_tuple(upstream)
            if up[:2] == series:
                patch = up[2]
                where = '%s (upstream %s)' % (parsed['release'], upstream)
        elif parsed['distribution']:
            findings.append(finding(
                'kernel_patch_unknown', INFO,
                'Kernel %s is a %s distribution kernel; its upstream patch level is not known here, '
                'so whether it has %s cannot be told (distributions backport it).'
                % (parsed['release'], _fmt(series), issue['what']),
                'Check the distribution changelog, or run %s.%d or later.'
                % (_fmt(series), issue['fixed_in'])))
            continue
        if patch < issue['fixed_in']:
            findings.append(finding(
                'kernel_known_issue', WARNING,
                'Kernel %s is older than %s.%d, which has %s (known).'
                % (where, _fmt(series), issue['fixed_in'], issue['what']),
                'Use %s.%d or later, or a distribution kernel with the fix backported.'
                % (_fmt(series), issue['fixed_in'])))
    return findings


def kernel_issues(release, upstream=None, cpu=None):
    """Findings for a kernel release (AVIC.md section 4).

    ``upstream`` is the upstream version when the distribution tells it
    (see upstream_from_proc_version); it refines the patch-level rules.
    ``cpu`` (a cpu_rules.classify_cpu dict, optional) lets the avic=auto
    finding say what auto does on this CPU.
    Raises KernelReleaseError for a string that is not a kernel release.
    """
    parsed = parse_release(release)
    version = parsed['version']
    rel = parsed['release']
    if version < MINIMUM:
        return [finding(
            'kernel_too_old', INHIBIT,
            'Kernel %s is older than %s, which introduced SVM AVIC (known): AVIC cannot be used.'
            % (rel, _fmt(MINIMUM)),
            'Install kernel %s or later (%s or later recommended).' % (_fmt(MINIMUM), _fmt(RECOMMENDED)))]
    findings = []
    if version < INKERNEL_IRQCHIP:
        findings.append(finding(
            'kernel_split_irqchip_only', WARNING,
            'Kernel %s is older than 5.6: AVIC works only with the split irqchip (known), so every '
            'guest needs <ioapic driver=\'qemu\'/>.%s'
            % (rel, '' if version >= IOMMU_AVIC else ' IOMMU AVIC needs 4.9.'),
            'Install kernel 5.6 or later, or give each guest <ioapic driver=\'qemu\'/>.'))
    findings.extend(_known_issue_findings(parsed, upstream))
    if version < NESTED_COEXIST:
        findings.append(finding(
            'kernel_nested_inhibits', WARNING,
            'Kernel %s is older than 5.19: %sforce_avic does not exist (known).' % (
                rel, 'while kvm_amd runs with nested=1, AVIC is inhibited for the whole VM of a guest '
                     'that has SVM in its CPUID (nested virtualisation), and ' if version >= APICV_INHIBITS
                else ''),
            'Keep kvm_amd nested=0 and disable svm in guest CPUs, or use kernel 5.19 or later.'))
    if version < X2AVIC:
        findings.append(finding(
            'kernel_no_x2avic', INFO,
            'Kernel %s is older than 6.0: no x2AVIC, and %s (known).' % (
                rel, 'guests with x2apic lose AVIC for the whole VM' if version >= APICV_INHIBITS else
                'kvm_amd with AVIC on hides x2apic from guests'),
            "Disable x2apic in guest CPUs (<feature policy='disable' name='x2apic'/>), "
            'or use kernel 6.0 or later on a CPU with x2AVIC.'))
    if version >= AVIC_AUTO:
        findings.append(finding(
            'kernel_avic_auto', INFO,
            'Kernel %s is 6.18 or later: with avic unset (auto), kvm_amd turns AVIC on only on a '
            'Zen 4 or later CPU with x2AVIC, AVIC in CPUID and nested paging on, and not on an '
            'SEV-SNP host that lacks HvInUseWrAllowed (known); elsewhere it stays off, and an '
            'explicit avic=1 is still honoured.%s' % (rel, _auto_on_this_cpu(cpu)),
            ''))
    return findings


def _auto_on_this_cpu(cpu):
    if not cpu or cpu.get('vendor') not in ('amd', 'hygon'):
        return ''
    if avic_auto_enables(cpu):
        return ' On this CPU auto turns AVIC on.'
    return ' On this CPU auto leaves AVIC off (%s): set avic=1 to use it.' % (
        'no x2AVIC in CPUID' if not cpu.get('x2avic') else
        'older than Zen 4' if not avic_auto_enables(dict(cpu, microarchitecture='zen4')) else
        'AVIC not in CPUID')
