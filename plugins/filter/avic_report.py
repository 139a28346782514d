# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report filters: the fleet report from the hosts' variables, and its table and Markdown."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.plugin_utils import fleet
from ansible_collections.vfio.avic.plugins.plugin_utils import report as reporting

# The documented outputs the report folds in: fleet_report() field -> the variable that holds it
# (the host, kernel and guest roles' results, and the runtime sample of playbooks/audit.yml).
ROLE_OUTPUTS = (
    ('facts', 'vfio_avic'),
    ('host_status', 'avic_host_status'),
    ('kernel_report', 'avic_kernel_report'),
    ('guest_report', 'avic_guest_report'),
    ('runtime', 'avic_runtime_guests'),
)


def host_entries(hosts):
    """fleet_report() entries from a list of hostvars mappings."""
    entries = []
    for hv in hosts or []:
        if not hasattr(hv, 'get'):
            raise AnsibleFilterError('vfio.avic.avic_fleet_report expects a list of hostvars '
                                     "(hosts | map('extract', hostvars)), got an item %r" % (hv,))
        entry = {'name': hv.get('inventory_hostname')}
        for field, variable in ROLE_OUTPUTS:
            entry[field] = hv.get(variable)
        entries.append(entry)
    return entries


def avic_fleet_report(hosts):
    """The fleet report (rows, guests, lines, records, totals) from a list of hostvars."""
    try:
        return fleet.fleet_report(host_entries(list(hosts or [])))
    except ValueError as exc:  # HostFactsError is a ValueError too
        raise AnsibleFilterError('vfio.avic.avic_fleet_report: %s' % exc)


def avic_fleet_table(rows):
    """Fleet table lines from the report's rows."""
    return reporting.fleet_table(list(rows or []))


def avic_fleet_markdown(rows, domains_by_host=None):
    """Markdown report lines from the report's rows and guests ({host: guests})."""
    return reporting.fleet_markdown(list(rows or []), domains_by_host or {})


class FilterModule(object):
    """AVIC report filters."""

    def filters(self):
        return {
            'avic_fleet_report': avic_fleet_report,
            'avic_fleet_table': avic_fleet_table,
            'avic_fleet_markdown': avic_fleet_markdown,
        }
