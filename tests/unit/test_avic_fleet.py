# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.filter.avic_report import avic_fleet_report
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.plugin_utils import fleet
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.plugin_utils import report as reporting

from conftest import write_host_tree

PIT = {'id': 'pit_reinject', 'severity': 'inhibit', 'message': 'PIT reinjects', 'fix': 'discard'}
X2 = {'id': 'x2apic_exposed', 'severity': 'warning', 'message': 'x2apic', 'fix': '-x2apic'}


def _zen2(tmp_path):
    facts = gather_facts.gather(root=write_host_tree(
        tmp_path, cpuinfo_name='zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '1'},
        files={'/etc/modprobe.d/kvm.conf': 'options kvm_amd avic=1 nested=0\n'}))
    domains = [reporting.domain_result('win', [PIT, X2], True),
               reporting.domain_result('lin', [PIT], False),
               reporting.domain_result('ok', [], False)]
    return facts, domains, reporting.host_summary('zen2', facts, domains)


def test_audit_row_passes_through_unchanged(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    merged, guests = fleet.merge_host(row, domains)
    assert merged['status'] == 'inactive' and merged['pending'] == row['pending']
    assert (merged['guests_ready'], merged['guests_restart'], merged['guests_inhibited']) == (1, 0, 2)
    assert [g['verdict'] for g in guests] == ['inhibited', 'inhibited', 'ready']
    assert 'runtime' not in merged


def test_role_results_override_stale_facts(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    status = {'state': 'pending_reload', 'reasons': ['guests are running: win']}
    kernel = {'running': '6.1.0-26-amd64', 'target': '6.12.9+bpo-amd64', 'pinned': True,
              'reboot_pending': True}
    guests = [
        {'name': 'win', 'state': 'restart_required', 'changed': True, 'active': True,
         'findings_before': ['pit_reinject', 'x2apic_exposed'], 'findings_after': [],
         'backup': '/var/lib/vfio-avic/backups/win.xml', 'reasons': ['running: restart to apply']},
        {'name': 'lin', 'state': 'ready', 'changed': True, 'findings_before': ['pit_reinject'],
         'findings_after': []},
        {'name': 'new-vm', 'state': 'ready', 'changed': True, 'findings_before': [], 'findings_after': []},
    ]
    merged, out = fleet.merge_host(row, domains, status, kernel, guests)
    assert merged['status'] == 'pending_reload' and merged['audit_status'] == 'inactive'
    assert merged['reasons'] == ['guests are running: win']
    assert merged['pending'] == sorted(row['pending'] + ['kernel', 'reload'])
    assert merged['kernel_target'] == '6.12.9+bpo-amd64' and merged['kernel_pinned'] is True
    by_name = dict((g['name'], g) for g in out)
    assert by_name['win']['verdict'] == 'restart_required' and by_name['win']['active'] is True
    assert by_name['win']['fixed'] == ['pit_reinject', 'x2apic_exposed']
    assert by_name['win']['backup'].endswith('win.xml')
    assert by_name['lin']['verdict'] == 'ready' and by_name['lin']['inhibits'] == []
    assert by_name['new-vm']['verdict'] == 'ready'
    assert (merged['guests_total'], merged['guests_ready'], merged['guests_restart']) == (4, 3, 1)
    assert row['status'] == 'inactive', 'the input row is not modified'


def test_active_host_drops_stale_pending_options(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    assert row['pending']
    merged, _guests = fleet.merge_host(row, domains, {'state': 'active', 'reasons': []})
    assert merged['status'] == 'active' and merged['pending'] == []


def test_runtime_verdicts_are_attached_and_counted(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    runtime = [{'name': 'win', 'pid': 4242, 'verdict': 'avic_inhibited', 'reasons': ['PIT_REINJ'],
                'findings': ['pit_reinject']},
               {'name': 'stray', 'pid': 99, 'verdict': 'avic_active', 'reasons': []}]
    merged, guests = fleet.merge_host(row, domains, runtime=runtime)
    by_name = dict((g['name'], g) for g in guests)
    assert by_name['win']['runtime'] == {'verdict': 'avic_inhibited', 'reasons': ['PIT_REINJ'],
                                         'findings': ['pit_reinject']}
    assert by_name['stray']['verdict'] == 'unaudited' and by_name['stray']['runtime']['verdict'] == 'avic_active'
    assert merged['runtime'] == {'avic_active': 1, 'avic_inhibited': 1}
    assert merged['guests_total'] == 3, 'a sampled guest that was not audited is not counted as audited'
    table = reporting.fleet_table([merged])
    assert table[0].split()[-1] == 'runtime' and '1 active, 1 inhibited' in table[2]
    text = '\n'.join(reporting.fleet_markdown([merged], {'zen2': guests}))
    assert '| zen2 | win | running | inhibited | pit_reinject | x2apic_exposed | inhibited (PIT_REINJ) |' in text


def test_fleet_totals_and_table_with_role_states(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    rows = [fleet.merge_host(dict(row, host=name), domains, {'state': state, 'reasons': []})[0]
            for name, state in (('a', 'active'), ('b', 'pending_reboot'), ('c', 'failed'))]
    totals = reporting.fleet_totals(rows)
    assert (totals['active'], totals['pending_reboot'], totals['failed']) == (1, 1, 1)
    table = reporting.fleet_table(rows)
    assert table[-1] == ('3 hosts: 1 active, 0 inactive, 0 unsupported, 0 unknown, 1 pending reboot, '
                         '1 failed; guests 3 ready, 6 inhibited')
    assert 'reboot' in table[3]


def test_merge_without_role_results_keeps_the_audit(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    merged, guests = fleet.merge_host(row, domains, None, None, None, None)
    assert merged['status'] == 'inactive' and [g['name'] for g in guests] == [d['name'] for d in domains]


def test_fleet_report_from_hostvars(tmp_path, domain_xml):
    zen4 = tmp_path / 'zen4'
    zen4.mkdir()
    facts = gather_facts.gather(root=write_host_tree(
        zen4, cpuinfo_name='zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'}))
    facts['domains'] = [{'name': 'win', 'active': True, 'xml': domain_xml('seed_windows_before.xml')},
                        {'name': 'bad', 'active': False, 'xml': '<domain'}]
    hosts = [
        {'inventory_hostname': 'zen4', 'vfio_avic': facts,
         'avic_host_status': {'state': 'active', 'reasons': []},
         'avic_runtime_guests': [{'name': 'win', 'verdict': 'avic_inhibited', 'reasons': ['HYPERV']}]},
        {'inventory_hostname': 'gone'},
        {'inventory_hostname': 'stopped',
         'avic_host_status': {'state': 'failed', 'reasons': ['svm_unavailable']}},
    ]
    report = avic_fleet_report(hosts)
    assert [r['host'] for r in report['rows']] == ['gone', 'stopped', 'zen4']
    gone, stopped, row = report['rows']
    assert gone['status'] == 'unknown' and 'unreachable' in gone['reasons'][0]
    assert stopped['status'] == 'failed' and stopped['reasons'] == ['svm_unavailable']
    assert row['status'] == 'active' and row['runtime'] == {'avic_inhibited': 1}
    win, bad = report['guests']['zen4']
    assert win['verdict'] == 'inhibited' and win['runtime']['reasons'] == ['HYPERV']
    assert bad['verdict'] == 'unreadable'
    assert set(report['records']) == {'gone', 'stopped', 'zen4'} and 'domains' not in report['records']['zen4']['facts']
    assert report['totals']['failed'] == 1 and report['totals']['unknown'] == 1
    lines = reporting.host_report_lines(row, facts, report['guests']['zen4'])
    assert '      runtime: inhibited (HYPERV)' in lines


def test_fleet_report_rejects_malformed_domains():
    with pytest.raises(AnsibleFilterError, match='domains list'):
        avic_fleet_report([{'inventory_hostname': 'h', 'vfio_avic': {'domains': ['x']}}])


def test_runtime_module_reasons_are_reduced_to_names_and_findings(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    runtime = [{'name': 'win', 'verdict': 'avic_inhibited',
                'reasons': [{'name': 'HYPERV', 'finding': 'hyperv_synic', 'scope': 'domain'},
                            {'name': 'IRQWIN', 'finding': None}]}]
    _row, guests = fleet.merge_host(row, domains, runtime=runtime)
    assert guests[0]['runtime'] == {'verdict': 'avic_inhibited', 'reasons': ['HYPERV', 'IRQWIN'],
                                    'findings': ['hyperv_synic']}


def _zen4_facts(root, domain_xml, kernel):
    root.mkdir()
    facts = gather_facts.gather(root=write_host_tree(
        root, cpuinfo_name='zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'}))
    facts['kernel'] = kernel
    facts['domains'] = [{'name': 'win', 'active': True, 'xml': domain_xml('seed_windows_before.xml')},
                        {'name': 'gone', 'active': False, 'xml': None, 'error': 'dumpxml failed'}]
    return facts


def test_a_host_with_an_unusable_kernel_release_does_not_break_the_fleet(tmp_path, domain_xml):
    hosts = [{'inventory_hostname': name, 'vfio_avic': _zen4_facts(tmp_path / name, domain_xml, kernel)}
             for name, kernel in (('good', '6.8.0-45-generic'), ('odd', 'weird'), ('blank', None))]
    report = avic_fleet_report(hosts)
    assert [r['host'] for r in report['rows']] == ['blank', 'good', 'odd']
    assert report['guests']['good'][0]['verdict'] == 'inhibited'
    for name, shown in (('odd', "'weird'"), ('blank', 'None')):
        win, gone = report['guests'][name]
        assert win['verdict'] == 'unreadable' and win['active'] is True and win['findings'] == []
        assert 'host facts are not usable' in win['error'] and shown in win['error'], win['error']
        assert gone['verdict'] == 'unreadable' and gone['error'] == 'dumpxml failed'
        row = report['records'][name]['summary']
        assert row['reasons'] == [win['error']]
        assert (row['guests_total'], row['guests_ready'], row['guests_inhibited']) == (2, 0, 0)
        lines = reporting.host_report_lines(row, hosts[0]['vfio_avic'], report['guests'][name])
        assert '  reason   %s' % win['error'] in lines and '      %s' % win['error'] in lines
    assert 'reasons' not in report['records']['good']['summary']
    assert report['totals']['hosts'] == 3 and report['totals']['guests_inhibited'] == 1
    # audited on its own, such a host is still refused, naming the problem
    with pytest.raises(ValueError, match='kernel'):
        fleet.audit_domains(hosts[1]['vfio_avic']['domains'], hosts[1]['vfio_avic'])


NOT_AMD = {'id': 'not_amd', 'severity': 'info', 'message': 'The host CPU is GenuineIntel, not AMD',
           'fix': ''}


def test_guests_of_a_non_amd_host_are_not_applicable(tmp_path, domain_xml):
    intel = tmp_path / 'intel'
    intel.mkdir()
    facts = gather_facts.gather(root=write_host_tree(intel, cpuinfo_name='intel_xeon_gold_6338.txt',
                                                     kernel='6.8.0-45-generic'))
    facts['domains'] = [{'name': 'win', 'active': True, 'xml': domain_xml('seed_windows_before.xml')},
                        {'name': 'lin', 'active': False, 'xml': domain_xml('clean_linux.xml')}]
    zen4 = _zen4_facts(tmp_path / 'zen4', domain_xml, '6.8.0-45-generic')
    report = avic_fleet_report([{'inventory_hostname': 'xeon', 'vfio_avic': facts},
                                {'inventory_hostname': 'epyc', 'vfio_avic': zen4}])
    win, lin = report['guests']['xeon']
    assert [f['id'] for f in win['findings']] == ['not_amd']
    assert win['verdict'] == lin['verdict'] == 'not_applicable'
    assert win['inhibits'] == [] and win['warnings'] == []
    epyc, xeon = report['rows']
    assert (xeon['guests_total'], xeon['guests_ready'], xeon['guests_inhibited'],
            xeon['guests_not_applicable']) == (2, 0, 0, 2)
    assert epyc['guests_not_applicable'] == 0
    totals = report['totals']
    assert (totals['guests_ready'], totals['guests_inhibited'], totals['guests_not_applicable']) == (0, 1, 2)

    table = reporting.fleet_table(report['rows'])
    assert 'guests n/a' in table[0]
    assert re.split(r'\s{2,}', table[0])[-2:] == ['guests n/a', 'inhibits']
    assert re.split(r'\s{2,}', table[3]) == ['xeon', 'intel', '6.8.0-45-generic', 'unsupported', '-',
                                             '0/0/0/2', '2', '-']
    assert table[-1].endswith('guests 0 ready, 1 inhibited, 2 not applicable')

    text = '\n'.join(reporting.fleet_markdown(report['rows'], report['guests']))
    assert '| guests ready/restart/inhibited/total | guests n/a | inhibits |' in text
    assert '|---|---|---|---|---|---|---|---|---|' in text
    assert '| 0/0/0/2 | 2 | - |' in text
    assert '| xeon | win | running | not applicable | - | - |' in text
    assert '2 not applicable.' in text

    lines = reporting.host_report_lines(xeon, facts, report['guests']['xeon'])
    assert '  guest win (running): not applicable' in lines
    assert '      %s' % win['findings'][0]['message'] in lines


def test_fleet_without_non_amd_guests_keeps_its_columns(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    table = reporting.fleet_table([row])
    assert 'n/a' not in table[0] and 'not applicable' not in table[-1]
    assert 'n/a' not in '\n'.join(reporting.fleet_markdown([row], {'zen2': domains}))


def test_not_applicable_only_when_every_finding_says_so():
    assert domain_rules.verdict([NOT_AMD]) == 'not_applicable'
    assert domain_rules.verdict([NOT_AMD, PIT]) == 'inhibited'
    assert domain_rules.verdict([NOT_AMD, X2]) == 'ready'
    assert domain_rules.verdict([]) == 'ready'
    assert reporting.domain_result('x', [NOT_AMD], error='no XML')['verdict'] == 'unreadable'


def test_guest_role_ready_on_a_non_amd_host_stays_not_applicable():
    domains = [reporting.domain_result('win', [NOT_AMD], True),
               reporting.domain_result('lin', [NOT_AMD], False)]
    row = {'host': 'xeon', 'status': 'unsupported', 'pending': []}
    report = [{'name': 'win', 'state': 'ready', 'findings_before': ['not_amd'], 'findings_after': ['not_amd']},
              {'name': 'lin', 'state': 'ready', 'findings_before': [], 'findings_after': []},
              {'name': 'new', 'state': 'not_applicable', 'findings_after': ['not_amd']}]
    merged, guests = fleet.merge_host(row, domains, guest_report=report)
    assert [(g['name'], g['verdict']) for g in guests] == [
        ('win', 'not_applicable'), ('lin', 'not_applicable'), ('new', 'not_applicable')]
    assert (merged['guests_total'], merged['guests_ready'], merged['guests_not_applicable']) == (3, 0, 3)
    merged, guests = fleet.merge_host(
        row, [reporting.domain_result('vm', [], False)],
        guest_report=[{'name': 'vm', 'state': 'ready', 'findings_after': []}])
    assert guests[0]['verdict'] == 'ready' and merged['guests_not_applicable'] == 0
