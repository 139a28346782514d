# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.filter.avic_report import avic_fleet_merge
from ansible_collections.vfio.avic.plugins.module_utils import avic_fleet, avic_gather, avic_report

from conftest import write_host_tree

PIT = {'id': 'pit_reinject', 'severity': 'inhibit', 'message': 'PIT reinjects', 'fix': 'discard'}
X2 = {'id': 'x2apic_exposed', 'severity': 'warning', 'message': 'x2apic', 'fix': '-x2apic'}


def _zen2(tmp_path):
    facts = avic_gather.gather(root=write_host_tree(
        tmp_path, cpuinfo_name='zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '1'},
        files={'/etc/modprobe.d/kvm.conf': 'options kvm_amd avic=1 nested=0\n'}))
    domains = [avic_report.domain_result('win', [PIT, X2], True),
               avic_report.domain_result('lin', [PIT], False),
               avic_report.domain_result('ok', [], False)]
    return facts, domains, avic_report.host_summary('zen2', facts, domains)


def test_audit_row_passes_through_unchanged(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    merged, guests = avic_fleet.merge_host(row, domains)
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
    merged, out = avic_fleet.merge_host(row, domains, status, kernel, guests)
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
    merged, _guests = avic_fleet.merge_host(row, domains, {'state': 'active', 'reasons': []})
    assert merged['status'] == 'active' and merged['pending'] == []


def test_runtime_verdicts_are_attached_and_counted(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    runtime = [{'name': 'win', 'pid': 4242, 'verdict': 'avic_inhibited', 'reasons': ['PIT_REINJ'],
                'findings': ['pit_reinject']},
               {'name': 'stray', 'pid': 99, 'verdict': 'avic_active', 'reasons': []}]
    merged, guests = avic_fleet.merge_host(row, domains, runtime=runtime)
    by_name = dict((g['name'], g) for g in guests)
    assert by_name['win']['runtime'] == {'verdict': 'avic_inhibited', 'reasons': ['PIT_REINJ'],
                                         'findings': ['pit_reinject']}
    assert by_name['stray']['verdict'] == 'unaudited' and by_name['stray']['runtime']['verdict'] == 'avic_active'
    assert merged['runtime'] == {'avic_active': 1, 'avic_inhibited': 1}
    assert merged['guests_total'] == 3, 'a sampled guest that was not audited is not counted as audited'
    table = avic_report.fleet_table([merged])
    assert table[0].split()[-1] == 'runtime' and '1 active, 1 inhibited' in table[2]
    text = '\n'.join(avic_report.fleet_markdown([merged], {'zen2': guests}))
    assert '| zen2 | win | running | inhibited | pit_reinject | x2apic_exposed | inhibited (PIT_REINJ) |' in text


def test_fleet_totals_and_table_with_role_states(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    rows = [avic_fleet.merge_host(dict(row, host=name), domains, {'state': state, 'reasons': []})[0]
            for name, state in (('a', 'active'), ('b', 'pending_reboot'), ('c', 'failed'))]
    totals = avic_report.fleet_totals(rows)
    assert (totals['active'], totals['pending_reboot'], totals['failed']) == (1, 1, 1)
    table = avic_report.fleet_table(rows)
    assert table[-1] == ('3 hosts: 1 active, 0 inactive, 0 unsupported, 0 unknown, 1 pending reboot, '
                         '1 failed; guests 3 ready, 6 inhibited')
    assert 'reboot' in table[3]


def test_filter_validates_its_arguments(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    out = avic_fleet_merge(row, domains, None, None, None, None)
    assert set(out) == {'row', 'guests'} and out['row']['status'] == 'inactive'
    with pytest.raises(AnsibleFilterError, match='avic_host_summary'):
        avic_fleet_merge({'status': 'x'})
    with pytest.raises(AnsibleFilterError, match='host_status must be a dict'):
        avic_fleet_merge(row, domains, 'active')
    with pytest.raises(AnsibleFilterError, match='guest_report must be a list'):
        avic_fleet_merge(row, domains, None, None, {'name': 'x'})


def test_fleet_report_from_hostvars(tmp_path, domain_xml):
    zen4 = tmp_path / 'zen4'
    zen4.mkdir()
    facts = avic_gather.gather(root=write_host_tree(
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
    report = avic_fleet.fleet_report(hosts)
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
    lines = avic_report.host_report_lines(row, facts, report['guests']['zen4'])
    assert '      runtime: inhibited (HYPERV)' in lines


def test_fleet_report_rejects_malformed_domains():
    with pytest.raises(ValueError, match='domains list'):
        avic_fleet.fleet_report([{'inventory_hostname': 'h', 'vfio_avic': {'domains': ['x']}}])


def test_runtime_module_reasons_are_reduced_to_names_and_findings(tmp_path):
    _facts, domains, row = _zen2(tmp_path)
    runtime = [{'name': 'win', 'verdict': 'avic_inhibited',
                'reasons': [{'name': 'HYPERV', 'finding': 'hyperv_synic', 'scope': 'domain'},
                            {'name': 'IRQWIN', 'finding': None}]}]
    _row, guests = avic_fleet.merge_host(row, domains, runtime=runtime)
    assert guests[0]['runtime'] == {'verdict': 'avic_inhibited', 'reasons': ['HYPERV', 'IRQWIN'],
                                    'findings': ['hyperv_synic']}
