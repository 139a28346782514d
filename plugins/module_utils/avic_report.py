# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-host and fleet AVIC reports as plain data and text (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.avic_cpu import generation_name
from ansible_collections.vfio.avic.plugins.module_utils.avic_domain import verdict

_MARK = {'inhibit': 'INHIBIT', 'warning': 'WARN', 'info': 'info'}


def _ids(findings, severity):
    return [f['id'] for f in findings if f.get('severity') == severity]


def domain_result(name, findings, active=False, error=None):
    """One audited guest: name, active, verdict (ready, inhibited, unreadable), findings."""
    return {
        'name': name,
        'active': bool(active),
        'verdict': 'unreadable' if error else verdict(findings),
        'inhibits': _ids(findings, 'inhibit'),
        'warnings': _ids(findings, 'warning'),
        'findings': findings,
        'error': error,
    }


def host_summary(host, facts, domains=None):
    """One row of the fleet table for a host, from its vfio_avic fact and audited domains."""
    facts = facts or {}
    cpu = facts.get('cpu') or {}
    findings = facts.get('findings') or []
    domains = domains or []
    arch = cpu.get('microarchitecture')
    return {
        'host': host,
        'cpu': cpu.get('model_name') or cpu.get('vendor') or 'unknown',
        'vendor': cpu.get('vendor'),
        'generation': generation_name(arch) if arch else None,
        'cpu_status': cpu.get('status'),
        'kernel': facts.get('kernel'),
        'status': facts.get('status', 'unknown'),
        'avic': bool(facts.get('avic')),
        'x2avic': bool(facts.get('x2avic')),
        'inhibits': _ids(findings, 'inhibit'),
        'warnings': _ids(findings, 'warning'),
        'pending': sorted((facts.get('pending') or {}).keys()),
        'guests_total': len(domains),
        'guests_ready': len([d for d in domains if d['verdict'] == 'ready']),
        'guests_inhibited': len([d for d in domains if d['verdict'] == 'inhibited']),
        'domains_error': facts.get('domains_error'),
    }


def host_report_lines(summary, facts, domains=None):
    """Readable lines for one host: CPU, kernel, status, findings, then each guest."""
    facts = facts or {}
    generation = ' (%s)' % summary['generation'] if summary['generation'] else ''
    lines = [
        '%s: AVIC %s' % (summary['host'], summary['status'].upper()),
        '  CPU      %s%s' % (summary['cpu'], generation),
        '  kernel   %s' % (summary['kernel'] or 'unknown'),
        '  kvm      %s' % _kvm_line(facts),
    ]
    for item in facts.get('findings') or []:
        lines.append('  [%s] %s: %s' % (_MARK.get(item['severity'], item['severity']),
                                        item['id'], item['message']))
        if item.get('fix') and item['severity'] != 'info':
            lines.append('      fix: %s' % item['fix'])
    if summary.get('domains_error'):
        lines.append('  guests: not listed (%s)' % ' '.join(summary['domains_error'].split()))
    for dom in domains or []:
        state = 'running' if dom['active'] else 'shut off'
        lines.append('  guest %s (%s): %s' % (dom['name'], state, dom['verdict']))
        if dom.get('error'):
            lines.append('      %s' % dom['error'])
        for item in dom['findings']:
            if item['severity'] == 'info':
                continue
            lines.append('    [%s] %s: %s' % (_MARK[item['severity']], item['id'], item['message']))
    return lines


def _kvm_line(facts):
    kvm = facts.get('kvm_amd') or {}
    intel = facts.get('kvm_intel') or {}
    if (facts.get('cpu') or {}).get('vendor') == 'intel':
        if not intel.get('loaded'):
            return 'not applicable (Intel); kvm_intel not loaded'
        return 'not applicable (Intel); kvm_intel enable_apicv=%s' % intel.get('enable_apicv')
    if not kvm.get('loaded'):
        return 'not loaded'
    params = kvm.get('parameters') or {}
    shown = ['%s=%s' % (k, params[k]) for k in ('avic', 'force_avic', 'npt', 'nested', 'enable_ipiv')
             if k in params]
    return ' '.join(shown) or 'loaded'


COLUMNS = (('host', 'host'), ('generation', 'cpu'), ('kernel', 'kernel'), ('status', 'avic'),
           ('pending', 'pending'), ('guests', 'guests ready/inhibited/total'), ('inhibits', 'inhibits'))


def _cell(row, key):
    if key == 'guests':
        return '%d/%d/%d' % (row['guests_ready'], row['guests_inhibited'], row['guests_total'])
    value = row.get(key)
    if key == 'generation' and not value:
        value = row.get('vendor') or '-'
    if isinstance(value, list):
        return ','.join(value) or '-'
    return str(value) if value not in (None, '') else '-'


def fleet_table(rows):
    """A fixed-width text table of host summaries, with a totals line."""
    rows = sorted(rows, key=lambda r: r['host'])
    cells = [[title for _key, title in COLUMNS]]
    cells.extend([[_cell(r, key) for key, _title in COLUMNS] for r in rows])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    out = ['  '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    out.insert(1, '  '.join('-' * w for w in widths))
    totals = fleet_totals(rows)
    out.append('%d hosts: %d active, %d inactive, %d unsupported, %d unknown; guests %d ready, '
               '%d inhibited' % (totals['hosts'], totals['active'], totals['inactive'],
                                 totals['unsupported'], totals['unknown'], totals['guests_ready'],
                                 totals['guests_inhibited']))
    return out


def fleet_totals(rows):
    """Counts over the fleet."""
    totals = {'hosts': len(rows), 'active': 0, 'inactive': 0, 'unsupported': 0, 'unknown': 0,
              'guests_ready': 0, 'guests_inhibited': 0}
    for row in rows:
        totals[row['status'] if row['status'] in totals else 'unknown'] += 1
        totals['guests_ready'] += row['guests_ready']
        totals['guests_inhibited'] += row['guests_inhibited']
    return totals


def _md(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def fleet_markdown(rows, domains_by_host=None):
    """A Markdown report: the host table, then each host's guests with verdict and reasons."""
    rows = sorted(rows, key=lambda r: r['host'])
    domains_by_host = domains_by_host or {}
    totals = fleet_totals(rows)
    out = ['# AVIC fleet report', '',
           '%d hosts: %d active, %d inactive, %d unsupported, %d unknown; guests %d ready, %d inhibited.'
           % (totals['hosts'], totals['active'], totals['inactive'], totals['unsupported'],
              totals['unknown'], totals['guests_ready'], totals['guests_inhibited']), '',
           '## Hosts', '',
           '| host | CPU | generation | kernel | AVIC | pending | guests ready/inhibited/total | inhibits |',
           '|---|---|---|---|---|---|---|---|']
    for row in rows:
        out.append('| %s |' % ' | '.join(_md(c) for c in (
            row['host'], row['cpu'], row.get('generation') or '-', row.get('kernel') or '-',
            row['status'], ', '.join(row['pending']) or '-',
            '%d/%d/%d' % (row['guests_ready'], row['guests_inhibited'], row['guests_total']),
            ', '.join(row['inhibits']) or '-')))
    guests = [(host, dom) for host in sorted(domains_by_host) for dom in domains_by_host[host] or []]
    if guests:
        out += ['', '## Guests', '', '| host | guest | state | verdict | inhibited by | warnings |',
                '|---|---|---|---|---|---|']
        for host, dom in guests:
            out.append('| %s |' % ' | '.join(_md(c) for c in (
                host, dom['name'], 'running' if dom.get('active') else 'shut off', dom['verdict'],
                ', '.join(dom.get('inhibits') or []) or (dom.get('error') or '-'),
                ', '.join(dom.get('warnings') or []) or '-')))
    return out
