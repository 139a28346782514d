# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report filters: audit domains and shape per-host and fleet reports."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils import avic_domain, avic_report


def avic_audit_domains(domains, host):
    """Audit every domain of avic_facts' ``domains`` list against ``host``."""
    results = []
    for dom in domains or []:
        if not isinstance(dom, dict) or 'name' not in dom:
            raise AnsibleFilterError('vfio.avic.avic_audit_domains expects the domains list of '
                                     'vfio.avic.avic_facts (dicts with name and xml), got %r' % (dom,))
        if dom.get('xml') is None:
            results.append(avic_report.domain_result(dom['name'], [], dom.get('active'),
                                                     dom.get('error') or 'no XML'))
            continue
        try:
            findings = avic_domain.audit_domain(dom['xml'], host, dom['name'])
        except avic_domain.DomainXMLError as exc:
            results.append(avic_report.domain_result(dom['name'], [], dom.get('active'), str(exc)))
            continue
        except avic_domain.HostFactsError as exc:
            raise AnsibleFilterError('vfio.avic.avic_audit_domains: %s' % exc)
        results.append(avic_report.domain_result(dom['name'], findings, dom.get('active')))
    return results


def avic_host_summary(facts, host, domains=None):
    """One fleet-table row for a host."""
    return avic_report.host_summary(host, facts, domains)


def avic_host_report(summary, facts, domains=None):
    """Readable report lines for one host."""
    return avic_report.host_report_lines(summary, facts, domains)


def avic_fleet_table(rows):
    """Fleet table lines from host summaries."""
    return avic_report.fleet_table(list(rows or []))


def avic_fleet_markdown(rows, domains_by_host=None):
    """Markdown report lines from host summaries and {host: audited domains}."""
    return avic_report.fleet_markdown(list(rows or []), domains_by_host or {})


def avic_fleet_totals(rows):
    """Counts over host summaries."""
    return avic_report.fleet_totals(list(rows or []))


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
        }
