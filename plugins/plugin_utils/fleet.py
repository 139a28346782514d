# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Merge what the roles and the runtime sampler report into the fleet report (stdlib only).

The audit builds a host row with reporting.host_summary() and one reporting.domain_result()
per guest from the vfio_avic fact.  After a converge the roles know more than those facts, which
were read before anything changed: the host role's ``avic_host_status``, the kernel role's
``avic_kernel_report``, the guest role's ``avic_guest_report`` and the ``guests`` list of
vfio.avic.avic_runtime.  merge_host() folds them into the same row and guest list, so one table,
one JSON and one Markdown report serve audit.yml and site.yml alike.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.plugin_utils import report as reporting
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host

GUEST_STATES = ('ready', 'restart_required', 'inhibited', 'not_applicable', 'error')
RUNTIME_VERDICTS = ('avic_active', 'avic_inhibited', 'no_data')


def _ids(items):
    out = []
    for item in items or []:
        ident = item.get('id') if isinstance(item, dict) else item
        if ident and ident not in out:
            out.append(str(ident))
    return out


def _guest_from_role(entry, previous=None):
    """A domain_result-shaped dict from one avic_guest_report entry."""
    previous = previous or {}
    state = entry.get('state') or 'error'
    after = _ids(entry.get('findings_after'))
    if state == 'ready' and _not_applicable(after, previous):
        state = 'not_applicable'
    reasons = [str(r) for r in entry.get('reasons') or []]
    result = {
        'name': entry.get('name'),
        'active': bool(entry.get('active', previous.get('active', False))),
        'verdict': state if state in GUEST_STATES else 'error',
        'inhibits': after if state == 'inhibited' else [i for i in after if i in previous.get('inhibits', [])],
        'warnings': [i for i in after if i in previous.get('warnings', [])],
        'findings': previous.get('findings', []),
        'fixed': [i for i in _ids(entry.get('findings_before')) if i not in after],
        'changed': bool(entry.get('changed')),
        'backup': entry.get('backup'),
        'reasons': reasons,
        'error': previous.get('error') or ('; '.join(reasons) if state == 'error' else None),
        'source': previous.get('source', 'libvirt'),
    }
    return result


def _not_applicable(after, previous):
    """A guest the role calls ready on a host where AVIC does not apply (not AMD/Hygon)."""
    if after:
        return all(i in domain_rules.NOT_APPLICABLE_IDS for i in after)
    return previous.get('verdict') == 'not_applicable'


def merge_guests(domains, guest_report=None, runtime=None):
    """Audited domains updated by the guest role's report, then annotated with runtime verdicts."""
    merged = [copy.deepcopy(d) for d in domains or []]
    by_name = dict((d['name'], i) for i, d in enumerate(merged))
    for entry in guest_report or []:
        if not isinstance(entry, dict) or not entry.get('name'):
            continue
        index = by_name.get(entry['name'])
        item = _guest_from_role(entry, merged[index] if index is not None else None)
        if index is None:
            by_name[item['name']] = len(merged)
            merged.append(item)
        else:
            merged[index] = item
    for sample in runtime or []:
        if not isinstance(sample, dict) or not sample.get('name'):
            continue
        verdict = sample.get('verdict') if sample.get('verdict') in RUNTIME_VERDICTS else 'no_data'
        reasons = sample.get('reasons') or []
        runtime_entry = {
            'verdict': verdict,
            'reasons': [r.get('name') if isinstance(r, dict) else str(r) for r in reasons],
            'findings': list(sample.get('findings') or []) or
            [r['finding'] for r in reasons if isinstance(r, dict) and r.get('finding')],
        }
        index = by_name.get(sample['name'])
        if index is None:
            by_name[sample['name']] = len(merged)
            merged.append({'name': sample['name'], 'active': True, 'verdict': 'unaudited',
                           'inhibits': [], 'warnings': [], 'findings': [], 'error': None,
                           'runtime': runtime_entry})
        else:
            merged[index]['runtime'] = runtime_entry
    return merged


def _count(domains, verdict):
    return len([d for d in domains if d.get('verdict') == verdict])


def merge_host(summary, domains=None, host_status=None, kernel_report=None, guest_report=None,
               runtime=None):
    """Return (row, guests): the host summary and guest list with the roles' results folded in."""
    row = copy.deepcopy(summary)
    guests = merge_guests(domains, guest_report, runtime)
    pending = list(row.get('pending') or [])

    if isinstance(host_status, dict) and host_status.get('state'):
        row['audit_status'] = row.get('status')
        row['status'] = str(host_status['state'])
        row['reasons'] = [str(r) for r in host_status.get('reasons') or []]
        if row['status'] == 'pending_reload' and 'reload' not in pending:
            pending.append('reload')
        if row['status'] == 'pending_reboot' and 'reboot' not in pending:
            pending.append('reboot')
        if row['status'] in ('active', 'unsupported', 'disabled'):
            # the facts' "configured differs from running" was read before the role acted
            pending = [p for p in pending if p in ('reload', 'reboot', 'kernel')]

    if isinstance(kernel_report, dict) and kernel_report:
        row['kernel_target'] = kernel_report.get('target')
        row['kernel_pinned'] = bool(kernel_report.get('pinned'))
        if kernel_report.get('reboot_pending') and 'kernel' not in pending:
            pending.append('kernel')

    row['pending'] = sorted(pending)
    row['guests_total'] = len([g for g in guests if g.get('verdict') != 'unaudited'])
    row['guests_ready'] = _count(guests, 'ready')
    row['guests_restart'] = _count(guests, 'restart_required')
    row['guests_inhibited'] = _count(guests, 'inhibited')
    row['guests_not_applicable'] = _count(guests, 'not_applicable')
    sampled = [g['runtime']['verdict'] for g in guests if g.get('runtime')]
    if runtime is not None:
        row['runtime'] = dict((v, sampled.count(v)) for v in RUNTIME_VERDICTS if sampled.count(v))
    return row, guests


def _check_domains(domains):
    for dom in domains or []:
        if not isinstance(dom, dict) or 'name' not in dom:
            raise ValueError('expected the domains list of vfio.avic.avic_facts (dicts with name and '
                             'xml), got %r' % (dom,))


def audit_domains(domains, facts):
    """Audit avic_facts' ``domains`` list against the host; unreadable XML becomes an error entry.

    Raises domain_host.HostFactsError when ``facts`` is not a usable host description.
    """
    _check_domains(domains)
    results = []
    for dom in domains or []:
        if dom.get('xml') is None:
            results.append(reporting.domain_result(dom['name'], [], dom.get('active'),
                                                   dom.get('error') or 'no XML'))
            continue
        try:
            findings = libvirt_domain.audit_domain(dom['xml'], facts, dom['name'])
        except libvirt_domain.DomainXMLError as exc:
            results.append(reporting.domain_result(dom['name'], [], dom.get('active'), str(exc)))
            continue
        results.append(reporting.domain_result(dom['name'], findings, dom.get('active')))
    return results


def _inhibits(findings):
    return [f['id'] for f in findings or [] if isinstance(f, dict) and f.get('severity') == 'inhibit']


def _restart_from_evidence(entry, defined_inhibits, running_findings, what):
    """A guest whose running command line has inhibitors that its definition no longer has runs
    the old settings: restart_required, with the evidence in ``reasons``."""
    running = _inhibits(running_findings)
    entry['running_inhibits'] = running
    stale = [i for i in running if i not in defined_inhibits]
    if stale and entry['verdict'] in ('ready', 'inhibited'):
        entry['verdict'] = 'restart_required'
        entry['reasons'] = ['the running command line still has %s, which the %s no longer has'
                            % (', '.join(stale), what)]


def running_guests(domains, facts):
    """The audited libvirt domains plus every other guest avic_facts saw: running QEMU processes
    that libvirt does not know (source 'qemu' or 'proxmox', audited from /proc/<pid>/cmdline) and
    the defined Proxmox VE guests (audited from <vmid>.conf).  A running libvirt or Proxmox guest
    whose command line has inhibitors that its definition no longer has is restart_required."""
    out = []
    for dom in domains or []:
        entry = dict(dom)
        entry.setdefault('source', 'libvirt')
        out.append(entry)
    by_name = dict((d['name'], d) for d in out)
    pve = dict((g.get('vmid'), g) for g in facts.get('proxmox_guests') or [] if isinstance(g, dict))
    seen_vmids = set()
    for proc in facts.get('guests') or []:
        if not isinstance(proc, dict):
            continue
        findings = proc.get('findings')
        known = by_name.get(proc.get('name')) if proc.get('source') == 'libvirt' else None
        if known is not None:
            if known.get('active') and findings is not None and known['verdict'] != 'unreadable':
                _restart_from_evidence(known, known['inhibits'], findings, 'persistent XML')
            continue
        name = proc.get('name') or ('vm%s' % proc['vmid'] if proc.get('vmid') else 'pid %s' % proc.get('pid'))
        error = None if findings is not None else (proc.get('error') or 'not audited')
        entry = reporting.domain_result(name, findings or [], True, error)
        entry.update({'source': proc.get('source') or 'qemu', 'pid': proc.get('pid'),
                      'vmid': proc.get('vmid')})
        conf = pve.get(proc.get('vmid')) if entry['source'] == 'proxmox' else None
        if conf is not None:
            seen_vmids.add(proc['vmid'])
            entry['name'] = conf.get('name') or entry['name']
            if conf.get('findings') is not None and findings is not None:
                _restart_from_evidence(entry, _inhibits(conf['findings']), findings, 'configuration')
        out.append(entry)
    for vmid in sorted(v for v in pve if v not in seen_vmids):
        conf = pve[vmid]
        findings = conf.get('findings')
        entry = reporting.domain_result(conf.get('name') or 'vm%s' % vmid, findings or [],
                                        bool(conf.get('running')),
                                        conf.get('error') if findings is None else None)
        entry.update({'source': 'proxmox', 'vmid': vmid})
        out.append(entry)
    return out


def _audit_host_domains(facts):
    """(domains, reason): audit_domains() for one host of the fleet, with the guests libvirt does
    not run (running_guests()).  Facts the audit cannot use (a kernel release that does not parse,
    or none) make that host's guests unreadable, with the reason, instead of failing the report
    of every host; reason is None otherwise."""
    try:
        return running_guests(audit_domains(facts.get('domains'), facts), facts), None
    except domain_host.HostFactsError as exc:
        reason = 'guests not audited: the host facts are not usable (%s)' % exc
        return [reporting.domain_result(
            dom['name'], [], dom.get('active'),
            reason if dom.get('xml') is not None else dom.get('error') or 'no XML')
            for dom in facts.get('domains') or []], reason


def _unknown_row(host, reason):
    row = reporting.host_summary(host, {})
    row['reasons'] = [reason]
    return row


def fleet_report(hosts):
    """The whole fleet report from one entry per host.

    Each entry is a dict with ``name`` and, to say anything, ``facts`` (the vfio_avic fact); the
    roles' results ``host_status``, ``kernel_report``, ``guest_report`` and the sampled ``runtime``
    guests are folded in where present (the avic_fleet_report filter builds these entries from the
    roles' documented outputs).  Returns ``rows`` (sorted by host), ``guests`` ({host: [guest]}),
    ``lines`` ({host: readable report lines}), ``records`` ({host: {summary, guests, facts}}, the
    JSON report's body; facts without the domain XML) and ``totals``.
    """
    rows, guests, records, lines = [], {}, {}, {}
    for entry in hosts or []:
        name = str(entry.get('name'))
        facts = entry.get('facts')
        status = _dict(entry.get('host_status'))
        if not isinstance(facts, dict):
            row = _unknown_row(name, 'no AVIC facts: the host was unreachable or failed before '
                                     'vfio.avic.avic_facts ran')
            if status and status.get('state'):
                row, _none = merge_host(row, [], status)
            rows.append(row)
            guests[name] = []
            lines[name] = reporting.host_report_lines(row, {}, [])
            records[name] = {'summary': row, 'guests': [], 'facts': None}
            continue
        domains, unusable = _audit_host_domains(facts)
        summary = reporting.host_summary(name, facts, domains)
        if unusable:
            summary['reasons'] = [unusable]
        runtime = _list(entry.get('runtime'), none=True)
        row, merged = merge_host(summary, domains, status, _dict(entry.get('kernel_report')),
                                 _list(entry.get('guest_report')), runtime)
        rows.append(row)
        guests[name] = merged
        lines[name] = reporting.host_report_lines(row, facts, merged)
        records[name] = {'summary': row, 'guests': merged,
                         'facts': dict((k, v) for k, v in facts.items() if k != 'domains')}
    rows.sort(key=lambda r: r['host'])
    return {'rows': rows, 'guests': guests, 'lines': lines, 'records': records,
            'totals': reporting.fleet_totals(rows)}


def _dict(value):
    return value if isinstance(value, dict) else None


def _list(value, none=False):
    if isinstance(value, (list, tuple)):
        return list(value)
    return None if none else []
