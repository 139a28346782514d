# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side AVIC filters; each one calls the rules in module_utils."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils.rules import cpu as cpu_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host


def cpu_avic_support(cpuinfo_text):
    """Classify /proc/cpuinfo text (never fails; garbage gives vendor unknown)."""
    return cpu_rules.classify_cpu(cpuinfo_text)


def _release(value):
    if isinstance(value, dict) and 'kernel' in value:
        value = value['kernel']
    return value


def kernel_avic_issues(kernel_release, upstream=None):
    """Findings for a kernel release string."""
    try:
        return kernel_rules.kernel_issues(_release(kernel_release), upstream)
    except kernel_rules.KernelReleaseError as exc:
        raise AnsibleFilterError('vfio.avic.kernel_avic_issues: %s' % exc)


def kernel_version(kernel_release):
    """Parse a kernel release into {release, major, minor, patch, suffix, distribution}."""
    try:
        parsed = kernel_rules.parse_release(_release(kernel_release))
    except kernel_rules.KernelReleaseError as exc:
        raise AnsibleFilterError('vfio.avic.kernel_version: %s' % exc)
    parsed['version'] = list(parsed['version'])
    return parsed


def kernel_at_least(kernel_release, minimum):
    """True when a kernel release is at least ``minimum`` ('5.6', '6.0.0')."""
    try:
        return kernel_rules.at_least(_release(kernel_release), minimum)
    except kernel_rules.KernelReleaseError as exc:
        raise AnsibleFilterError('vfio.avic.kernel_at_least: %s' % exc)


def domain_avic_issues(domain_xml, host, name=None):
    """Findings for a libvirt domain XML on ``host`` (the vfio_avic fact works as it is)."""
    try:
        return libvirt_domain.audit_domain(domain_xml, host, name)
    except (libvirt_domain.DomainXMLError, domain_host.HostFactsError) as exc:
        raise AnsibleFilterError('vfio.avic.domain_avic_issues: %s' % exc)


def avic_verdict(findings):
    """'inhibited' when any finding has severity inhibit, 'not_applicable' when the only findings
    are not_amd, else 'ready'."""
    if not isinstance(findings, list):
        raise AnsibleFilterError('vfio.avic.avic_verdict expects a list of findings, got %s'
                                 % type(findings).__name__)
    return domain_rules.verdict(findings)


class FilterModule(object):
    """AVIC filters."""

    def filters(self):
        return {
            'cpu_avic_support': cpu_avic_support,
            'kernel_avic_issues': kernel_avic_issues,
            'kernel_version': kernel_version,
            'kernel_at_least': kernel_at_least,
            'domain_avic_issues': domain_avic_issues,
            'avic_verdict': avic_verdict,
        }
