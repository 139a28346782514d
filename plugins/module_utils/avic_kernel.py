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

from ansible_collections.vfio.avic.plugins.module_utils.avic_findings import (
    INFO, INHIBIT, WARNING, finding)

# Milestones (major, minor). Sources: kernel commits named in the docs.
SVM_AVIC = (4, 7)          # "KVM: x86: Introduce SVM AVIC support" (known)
IOMMU_AVIC = (4, 8)        # "iommu/AMD: Introduce IOMMU AVIC support" (known)
INKERNEL_IRQCHIP = (5, 6)  # AVIC with the in-kernel irqchip (known)
NESTED_COEXIST = (5, 19)   # AVIC coexists with nested guests; force_avic (known)
X2AVIC = (6, 0)            # x2AVIC on Zen 4 (known)
AVIC_AUTO = (6, 18)        # avic=auto default on Zen 4+ with x2AVIC (known)

MINIMUM = SVM_AVIC
RECOMMENDED = INKERNEL_IRQCHIP

# Stable series with the lazy-EOI fix "kvm: ioapic: Restrict lazy EOI update to
# edge-triggered interrupts" (Windows guests hanging at boot with AVIC): a
# series and the first patch level that has it. The tie to these exact versions
# is reported, not confirmed in source.
KNOWN_ISSUES = (
    {'series': (5, 4), 'fixed_in': 41,
     'what': 'the lazy EOI fix (Windows guests reported to hang at boot with AVIC)'},
    {'series': (5, 6), 'fixed_in': 13,
     'what': 'the lazy EOI fix (Windows guests reported to hang at boot with AVIC)'},
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
                'Kernel %s is older than %s.%d, which has %s (reported).'
                % (where, _fmt(series), issue['fixed_in'], issue['what']),
                'Use %s.%d or later, or a distribution kernel with the fix backported.'
                % (_fmt(series), issue['fixed_in'])))
    return findings


def kernel_issues(release, upstream=None):
    """Findings for a kernel release (AVIC.md section 4).

    ``upstream`` is the upstream version when the distribution tells it
    (see upstream_from_proc_version); it refines the patch-level rules.
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
            % (rel, '' if version >= IOMMU_AVIC else ' IOMMU AVIC needs 4.8.'),
            'Install kernel 5.6 or later, or give each guest <ioapic driver=\'qemu\'/>.'))
    findings.extend(_known_issue_findings(parsed, upstream))
    if version < NESTED_COEXIST:
        findings.append(finding(
            'kernel_nested_inhibits', WARNING,
            'Kernel %s is older than 5.19: AVIC is inhibited for guests that have SVM exposed '
            '(nested virtualisation) (known), and force_avic does not exist.' % rel,
            'Keep kvm_amd nested=0 and disable svm in guest CPUs, or use kernel 5.19 or later.'))
    if version < X2AVIC:
        findings.append(finding(
            'kernel_no_x2avic', INFO,
            'Kernel %s is older than 6.0: no x2AVIC, and guests with x2apic lose AVIC for the whole '
            'VM (known).' % rel,
            "Disable x2apic in guest CPUs (<feature policy='disable' name='x2apic'/>), "
            'or use kernel 6.0 or later on a CPU with x2AVIC.'))
    if version >= AVIC_AUTO:
        findings.append(finding(
            'kernel_avic_auto', INFO,
            'Kernel %s is 6.18 or later: kvm_amd avic=auto turns AVIC on by default on Zen 4 and '
            'later CPUs with x2AVIC (known); an explicit avic=1 is still honoured.' % rel,
            ''))
    return findings


def kernel_meets(release, minimum=None, allow_known_issues=True):
    """Decide whether a kernel may be used: (ok, reasons).

    ``minimum`` defaults to the collection's floor; a caller passes a lower one
    to override it. Known-issue warnings refuse only when allow_known_issues is
    False.
    """
    floor = version_tuple(minimum) if minimum is not None else MINIMUM
    reasons = []
    if version_tuple(release) < floor:
        reasons.append('kernel %s is older than the minimum %s' % (release, _fmt(floor)))
    if not allow_known_issues:
        for item in kernel_issues(release):
            if item['id'] == 'kernel_known_issue':
                reasons.append(item['message'])
    return (not reasons), reasons
