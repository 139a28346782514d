# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-host and fleet AVIC reports as plain data and text, and the report files (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile

from ansible_collections.vfio.avic.plugins.module_utils.rules.cpu import generation_name
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules

_MARK = {'inhibit': 'INHIBIT', 'warning': 'WARN', 'info': 'info'}


def _ids(findings, severity):
    return [f['id'] for f in findings if f.get('severity') == severity]


def domain_result(name, findings, active=False, error=None):
    """One audited guest: name, active, verdict (ready, inhibited, not_applicable, unreadable),
    findings."""
    return {
        'name': name,
        'active': bool(active),
        'verdict': 'unreadable' if error else domain_rules.verdict(findings),
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
        'guests_not_applicable': len([d for d in domains if d['verdict'] == 'not_applicable']),
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
    lines.extend('  reason   %s' % reason for reason in summary.get('reasons') or [])
    if summary.get('kernel_target'):
        pinned = ' (pinned)' if summary.get('kernel_pinned') else ''
        lines.append('  target   kernel %s%s' % (summary['kernel_target'], pinned))
    for item in facts.get('findings') or []:
        lines.append('  [%s] %s: %s' % (_MARK.get(item['severity'], item['severity']),
                                        item['id'], item['message']))
        if item.get('fix') and item['severity'] != 'info':
            lines.append('      fix: %s' % item['fix'])
    if summary.get('domains_error'):
        lines.append('  guests: not listed (%s)' % ' '.join(summary['domains_error'].split()))
    for dom in domains or []:
        state = 'running' if dom['active'] else 'shut off'
        if dom.get('source') not in (None, 'libvirt'):
            state = '%s, %s' % (dom['source'], state)
        lines.append('  guest %s (%s): %s' % (dom['name'], state, dom['verdict'].replace('_', ' ')))
        if dom['verdict'] == 'restart_required' and dom.get('running_inhibits') is not None:
            lines.extend('      %s' % reason for reason in dom.get('reasons') or [])
        if dom.get('fixed'):
            lines.append('      fixed: %s' % ', '.join(dom['fixed']))
        if dom.get('runtime'):
            lines.append('      runtime: %s' % _runtime_guest_cell(dom['runtime']))
        if dom.get('error'):
            lines.append('      %s' % dom['error'])
        if dom['verdict'] == 'not_applicable':
            lines.extend('      %s' % item['message'] for item in dom['findings'][:1] if item.get('message'))
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
           ('pending', 'pending'), ('guests', 'guests ready/restart/inhibited/total'),
           ('inhibits', 'inhibits'))
RUNTIME_COLUMN = ('runtime', 'runtime')
NOT_APPLICABLE_COLUMN = ('guests_not_applicable', 'guests n/a')
_RUNTIME_WORDS = (('avic_active', 'active'), ('avic_inhibited', 'inhibited'), ('no_data', 'no data'))


def _guests_cell(row):
    return '%d/%d/%d/%d' % (row['guests_ready'], row.get('guests_restart', 0),
                            row['guests_inhibited'], row['guests_total'])


def _runtime_cell(value):
    if not value:
        return '-'
    return ', '.join('%d %s' % (value[key], word) for key, word in _RUNTIME_WORDS if value.get(key))


def _cell(row, key):
    if key == 'guests':
        return _guests_cell(row)
    if key == 'guests_not_applicable':
        return str(row.get(key) or 0)
    if key == 'runtime':
        return _runtime_cell(row.get('runtime'))
    value = row.get(key)
    if key == 'generation' and not value:
        value = row.get('vendor') or '-'
    if isinstance(value, list):
        return ','.join(value) or '-'
    return str(value) if value not in (None, '') else '-'


def _not_applicable(rows):
    """Whether any host has guests AVIC does not apply to (a column is shown for them then)."""
    return any(r.get('guests_not_applicable') for r in rows)


def _columns(rows):
    columns = COLUMNS
    if _not_applicable(rows):
        columns = columns[:-1] + (NOT_APPLICABLE_COLUMN,) + columns[-1:]
    if any('runtime' in r for r in rows):
        columns += (RUNTIME_COLUMN,)
    return columns


def _totals_line(totals):
    line = '%d hosts: %d active, %d inactive, %d unsupported, %d unknown' % (
        totals['hosts'], totals['active'], totals['inactive'], totals['unsupported'], totals['unknown'])
    line += ''.join(', %d %s' % (totals[k], k.replace('_', ' ')) for k in _EXTRA_STATES if totals[k])
    line += '; guests %d ready, %d inhibited' % (totals['guests_ready'], totals['guests_inhibited'])
    if totals['guests_restart']:
        line += ', %d restart required' % totals['guests_restart']
    if totals.get('guests_not_applicable'):
        line += ', %d not applicable' % totals['guests_not_applicable']
    return line


def fleet_table(rows):
    """A fixed-width text table of host summaries, with a totals line."""
    rows = sorted(rows, key=lambda r: r['host'])
    columns = _columns(rows)
    cells = [[title for _key, title in columns]]
    cells.extend([[_cell(r, key) for key, _title in columns] for r in rows])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = ['  '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    out.insert(1, '  '.join('-' * w for w in widths))
    out.append(_totals_line(fleet_totals(rows)))
    return out


_EXTRA_STATES = ('pending_reload', 'pending_reboot', 'failed', 'disabled')


def fleet_totals(rows):
    """Counts over the fleet."""
    totals = {'hosts': len(rows), 'active': 0, 'inactive': 0, 'unsupported': 0, 'unknown': 0,
              'guests_ready': 0, 'guests_inhibited': 0, 'guests_restart': 0, 'guests_not_applicable': 0}
    totals.update((state, 0) for state in _EXTRA_STATES)
    for row in rows:
        totals[row['status'] if row['status'] in totals else 'unknown'] += 1
        totals['guests_ready'] += row['guests_ready']
        totals['guests_inhibited'] += row['guests_inhibited']
        totals['guests_restart'] += row.get('guests_restart', 0)
        totals['guests_not_applicable'] += row.get('guests_not_applicable', 0)
    return totals


# Characters that Markdown (CommonMark and GitHub's tables) would read as markup in a cell: a
# backslash escape makes each one literal, so a name such as "a|b`<x>" renders as written. An
# underscore is markup only at the edge of a word (pending_reboot stays as it is).
_MD_SPECIAL = '\\`*[]<>|~&'


def _md(text):
    """``text`` as the literal content of one Markdown table cell (one line, markup escaped)."""
    flat = ' '.join(str(text).split())
    out = []
    for i, char in enumerate(flat):
        edge = char == '_' and not (0 < i < len(flat) - 1 and flat[i - 1].isalnum() and flat[i + 1].isalnum())
        out.append('\\' + char if char in _MD_SPECIAL or edge else char)
    return ''.join(out)


def fleet_markdown(rows, domains_by_host=None):
    """A Markdown report: the host table, then each host's guests with verdict and reasons."""
    rows = sorted(rows, key=lambda r: r['host'])
    domains_by_host = domains_by_host or {}
    runtime = any('runtime' in r for r in rows)
    not_applicable = _not_applicable(rows)
    out = ['# AVIC fleet report', '', _totals_line(fleet_totals(rows)) + '.', '', '## Hosts', '',
           '| host | CPU | generation | kernel | AVIC | pending | guests ready/restart/inhibited/total '
           '|%s inhibits |%s' % (' guests n/a |' if not_applicable else '', ' runtime |' if runtime else ''),
           '|---|---|---|---|---|---|---|%s---|%s' % ('---|' if not_applicable else '',
                                                      '---|' if runtime else '')]
    for row in rows:
        cells = [row['host'], row['cpu'], row.get('generation') or '-', row.get('kernel') or '-',
                 row['status'], ', '.join(row['pending']) or '-', _guests_cell(row)]
        if not_applicable:
            cells.append(str(row.get('guests_not_applicable') or 0))
        cells.append(', '.join(row['inhibits']) or '-')
        if runtime:
            cells.append(_runtime_cell(row.get('runtime')))
        out.append('| %s |' % ' | '.join(_md(c) for c in cells))
    guests = [(host, dom) for host in sorted(domains_by_host) for dom in domains_by_host[host] or []]
    if guests:
        sampled = any(dom.get('runtime') for _host, dom in guests)
        out += ['', '## Guests', '',
                '| host | guest | state | verdict | inhibited by | warnings |%s'
                % (' runtime |' if sampled else ''),
                '|---|---|---|---|---|---|%s' % ('---|' if sampled else '')]
        for host, dom in guests:
            cells = [host, _guest_label(dom), 'running' if dom.get('active') else 'shut off',
                     dom['verdict'].replace('_', ' '),
                     ', '.join(dom.get('inhibits') or []) or (dom.get('error') or '-'),
                     ', '.join(dom.get('warnings') or []) or '-']
            if sampled:
                cells.append(_runtime_guest_cell(dom.get('runtime')))
            out.append('| %s |' % ' | '.join(_md(c) for c in cells))
    return out


def _guest_label(dom):
    """A guest's name, with its source when libvirt does not run it (proxmox, qemu)."""
    if dom.get('source') in (None, 'libvirt'):
        return dom['name']
    return '%s (%s)' % (dom['name'], dom['source'])


def _runtime_guest_cell(sample):
    if not sample:
        return '-'
    word = dict(_RUNTIME_WORDS).get(sample['verdict'], sample['verdict'])
    reasons = ', '.join(sample.get('reasons') or [])
    return '%s (%s)' % (word, reasons) if reasons else word


# the version of the JSON report's layout: totals, then one record per host
REPORT_SCHEMA = 2


def report_files(report):
    """The report files of a fleet report (avic_fleet_report's result): {suffix: text}."""
    document = {'schema': REPORT_SCHEMA, 'totals': report['totals'], 'hosts': report['records']}
    return {
        '.json': json.dumps(document, indent=4, sort_keys=True, separators=(',', ': ')) + '\n',
        '.md': '\n'.join(fleet_markdown(report['rows'], report.get('guests'))) + '\n',
    }


def write_report_files(directory, name, report):
    """Write ``directory``/``name``.json and .md (the directory is made, mode 0755, when missing).

    Each file is written to a temporary file beside it and renamed over the old one, mode 0644,
    so a reader sees the old report or the new one, never a part. Returns the paths written;
    OSError (the file left as it was) when one cannot be written."""
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    paths = []
    for suffix, text in sorted(report_files(report).items()):
        path = os.path.join(directory, name + suffix)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, dir=directory)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(text.encode('utf-8'))
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        paths.append(path)
    return paths
