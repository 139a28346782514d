# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report filters: audit domains and shape per-host and fleet reports."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


from ansible_collections.vfio.avic.plugins.plugin_utils import fleet
from ansible_collections.vfio.avic.plugins.plugin_utils import report as reporting
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host


def avic_audit_domains(domains, host):
    """Audit every domain of avic_facts' ``domains`` list against ``host``."""
    try:
        return fleet.audit_domains(domains, host)
    except domain_host.HostFactsError as exc:
        raise AnsibleFilterError('vfio.avic.avic_audit_domains: %s' % exc)
    except ValueError as exc:
        raise AnsibleFilterError('vfio.avic.avic_audit_domains %s' % exc)


def avic_fleet_report(hosts):
    """The fleet report (rows, guests, totals) from a list of hostvars."""
    try:
        return fleet.fleet_report(list(hosts or []))
    except ValueError as exc:  # HostFactsError is a ValueError too
        raise AnsibleFilterError('vfio.avic.avic_fleet_report: %s' % exc)


def avic_host_summary(facts, host, domains=None):
    """One fleet-table row for a host."""
    return reporting.host_summary(host, facts, domains)


def avic_host_report(summary, facts, domains=None):
    """Readable report lines for one host."""
    return reporting.host_report_lines(summary, facts, domains)


def avic_fleet_table(rows):
    """Fleet table lines from host summaries."""
    return reporting.fleet_table(list(rows or []))


def avic_fleet_markdown(rows, domains_by_host=None):
    """Markdown report lines from host summaries and {host: audited domains}."""
    return reporting.fleet_markdown(list(rows or []), domains_by_host or {})


def avic_fleet_totals(rows):
    """Counts over host summaries."""
    return reporting.fleet_totals(list(rows or []))


def avic_fleet_merge(summary, domains=None, host_status=None, kernel_report=None, guest_report=None,
                     runtime=None):
    """Fold the roles' and the runtime sampler's results into a host row and its guests."""
    if not isinstance(summary, dict) or 'host' not in summary:
        raise AnsibleFilterError('vfio.avic.avic_fleet_merge expects a row of vfio.avic.avic_host_summary, '
                                 'got %r' % (summary,))
    for name, value in (('host_status', host_status), ('kernel_report', kernel_report)):
        if value is not None and not isinstance(value, dict):
            raise AnsibleFilterError('vfio.avic.avic_fleet_merge: %s must be a dict or omitted, got %r'
                                     % (name, value))
    for name, value in (('domains', domains), ('guest_report', guest_report), ('runtime', runtime)):
        if value is not None and not isinstance(value, list):
            raise AnsibleFilterError('vfio.avic.avic_fleet_merge: %s must be a list or omitted, got %r'
                                     % (name, value))
    row, guests = fleet.merge_host(summary, domains, host_status, kernel_report, guest_report,
                                   runtime)
    return {'row': row, 'guests': guests}


class FilterModule(object):
    """AVIC report filters."""

    def filters(self):
        return {
            'avic_audit_domains': avic_audit_domains,
            'avic_host_summary': avic_host_summary,
            'avic_host_report': avic_host_report,
            'avic_fleet_table': avic_fleet_table,
            'avic_fleet_totals': avic_fleet_totals,
            'avic_fleet_markdown': avic_fleet_markdown,
            'avic_fleet_merge': avic_fleet_merge,
            'avic_fleet_report': avic_fleet_report,
        }
