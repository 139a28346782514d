# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.filter import avic as filters
from ansible_collections.vfio.avic.plugins.filter import avic_report as report_filters
from ansible_collections.vfio.avic.plugins.plugin_utils import fleet

HOST = {'kernel': '6.1.0-26-amd64', 'avic': True, 'x2avic': False}


def test_filter_names_are_registered():
    assert set(filters.FilterModule().filters()) == {
        'cpu_avic_support', 'kernel_avic_issues', 'kernel_version', 'kernel_at_least',
        'domain_avic_issues', 'avic_verdict'}
    assert set(report_filters.FilterModule().filters()) == {
        'avic_fleet_report', 'avic_fleet_table', 'avic_fleet_markdown'}
    from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
    assert set(role_filters.FilterModule().filters()) == {
        '_host_preflight', '_host_state', '_host_reboot_guard', '_kernel_keep_plan', '_domain_xml',
        '_guest_report'}


def test_every_filter_has_its_documentation_file():
    import importlib
    import os
    from conftest import REPO
    folder = os.path.join(REPO, 'plugins', 'filter')
    missing = []
    for name in sorted(os.listdir(folder)):
        # __roles.py: the roles' internal filters, undocumented on purpose (test_role_filters_are_private)
        if not name.endswith('.py') or name.startswith('__'):
            continue
        plugin = importlib.import_module('ansible_collections.vfio.avic.plugins.filter.%s' % name[:-3])
        missing += ['%s (%s)' % (key, name) for key in plugin.FilterModule().filters()
                    if not os.path.exists(os.path.join(folder, key + '.yml'))]
    assert missing == [], 'add plugins/filter/<name>.yml for: %s' % ', '.join(missing)


def test_every_filter_documentation_file_is_yaml_with_its_sections():
    import os
    import yaml
    from conftest import REPO
    folder = os.path.join(REPO, 'plugins', 'filter')
    for name in sorted(n for n in os.listdir(folder) if n.endswith('.yml')):
        with open(os.path.join(folder, name)) as handle:
            doc = yaml.safe_load(handle)
        assert set(doc) >= {'DOCUMENTATION', 'EXAMPLES', 'RETURN'}, name
        assert doc['DOCUMENTATION']['name'] == name[:-4], name
        assert all(isinstance(line, str) for line in doc['DOCUMENTATION']['description']), name


def test_cpu_avic_support_contract(cpuinfo):
    cpu = filters.cpu_avic_support(cpuinfo('zen4_epyc_9654.txt'))
    for key in ('vendor', 'family', 'model', 'model_name', 'microarchitecture', 'svm', 'npt',
                'avic', 'x2avic', 'hypervisor', 'status', 'message'):
        assert key in cpu
    assert isinstance(cpu['family'], int) and isinstance(cpu['model'], int)
    assert filters.cpu_avic_support('')['vendor'] == 'unknown'


def test_kernel_filters():
    assert [f['id'] for f in filters.kernel_avic_issues('4.19.0-27-amd64')][0] == 'kernel_split_irqchip_only'
    assert filters.kernel_avic_issues({'kernel': '6.8.0-45-generic'}) == []
    assert filters.kernel_version('6.6.32-1-pve')['version'] == [6, 6, 32]
    assert filters.kernel_at_least('6.1.0-26-amd64', '6.0') is True
    for bad_call in (lambda: filters.kernel_avic_issues('banana'), lambda: filters.kernel_version(''),
                     lambda: filters.kernel_at_least('x.y', '6.0')):
        with pytest.raises(AnsibleFilterError) as err:
            bad_call()
        assert err.value.message.startswith('vfio.avic.kernel_')


def test_domain_filter_and_errors(domain_xml):
    ids = [f['id'] for f in filters.domain_avic_issues(domain_xml('hyperv_synic.xml'), HOST)]
    assert ids == ['hyperv_synic']
    with pytest.raises(AnsibleFilterError) as err:
        filters.domain_avic_issues(domain_xml('malformed.xml'), HOST, 'gamer')
    assert "domain 'gamer'" in str(err.value) and 'vfio.avic.domain_avic_issues' in str(err.value)
    with pytest.raises(AnsibleFilterError) as err:
        filters.domain_avic_issues(domain_xml('clean_linux.xml'), {'kernel': '6.1'})
    assert 'missing avic, x2avic' in str(err.value)


def test_verdict(domain_xml):
    findings = filters.domain_avic_issues(domain_xml('pit_reinject.xml'), HOST)
    assert filters.avic_verdict(findings) == 'inhibited'
    assert filters.avic_verdict([]) == 'ready'
    not_amd = {'id': 'not_amd', 'severity': 'info', 'message': 'GenuineIntel', 'fix': ''}
    assert filters.avic_verdict([not_amd]) == 'not_applicable'
    assert filters.avic_verdict([not_amd] + findings) == 'inhibited'
    with pytest.raises(AnsibleFilterError):
        filters.avic_verdict('not a list')


def test_audit_domains_marks_unreadable_and_keeps_going(domain_xml):
    domains = [
        {'name': 'win', 'active': True, 'xml': domain_xml('seed_windows_before.xml')},
        {'name': 'ok', 'active': False, 'xml': domain_xml('clean_linux.xml')},
        {'name': 'broken', 'active': False, 'xml': domain_xml('malformed.xml')},
        {'name': 'gone', 'active': False, 'xml': None, 'error': 'domain not found'},
    ]
    results = {r['name']: r for r in fleet.audit_domains(domains, HOST)}
    assert results['win']['verdict'] == 'inhibited' and results['win']['active']
    assert 'hyperv_synic' in results['win']['inhibits']
    assert results['ok']['verdict'] == 'ready'
    assert results['broken']['verdict'] == 'unreadable' and 'not well-formed' in results['broken']['error']
    assert results['gone']['error'] == 'domain not found'
    with pytest.raises(ValueError, match='expected the domains list'):
        fleet.audit_domains([{'xml': ''}], HOST)


def test_role_helper_filters_fail_with_the_variable_named():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
    assert '_kernel_keep_plan' in role_filters.FilterModule().filters()
    facts = {'cpu': {}, 'boot_cmdline': {'target': 'grub', 'value': 'quiet amd_iommu=on iommu=pt'}}
    pre = role_filters.host_preflight(facts, iommu_args=['amd_iommu=on', 'iommu=pt'])
    assert pre['cmdline_args'] == ['amd_iommu=on', 'iommu=pt'] and pre['cmdline_needed'] is False
    assert role_filters.host_preflight(facts, iommu_args=['iommu=nopt'])['cmdline_needed'] is True
    assert role_filters.host_preflight(facts, iommu_args=['iommu=pt'], boot_config='grubby')['cmdline_needed'] is True
    with pytest.raises(AnsibleFilterError, match='avic_host_iommu_intr'):
        role_filters.host_preflight(facts, iommu_args=['iommu=pt'], iommu_intr='posted')
    with pytest.raises(AnsibleFilterError, match='below the minimum'):
        role_filters.kernel_keep_plan({'kernel': '4.4.0', 'os': {'family': 'Debian', 'id': 'debian'}})


def test_guest_report_calls_a_guest_of_an_intel_host_not_applicable():
    from ansible_collections.vfio.avic.plugins.filter.__roles import guest_entry
    not_amd = {'id': 'not_amd', 'severity': 'info', 'message': 'Intel: APICv', 'fix': ''}
    pit = {'id': 'pit_reinject', 'severity': 'inhibit', 'message': 'PIT', 'fix': ''}
    entry = guest_entry({'item': {'name': 'win'}, 'findings_before': [not_amd], 'findings_after': [not_amd]})
    assert entry['state'] == 'not_applicable' and entry['line'] == 'win: not applicable'
    assert guest_entry({'item': {'name': 'lin'}, 'findings_after': [pit]})['state'] == 'inhibited'
    assert guest_entry({'item': {'name': 'ok'}, 'findings_after': []})['state'] == 'ready'
    assert guest_entry({'item': {'name': 'r'}, 'findings_after': [], 'restart_required': True})['state'] == \
        'restart_required'


def test_reboot_guard_filter_names_the_shutdown_option_it_is_given():
    from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
    guests = [{'pid': 41, 'name': 'win11', 'kvm': True}]
    guard = role_filters.host_reboot_guard(guests, 'win11\n', False, None, False,
                                           'avic_host_shutdown_guests')
    assert guard['action'] == 'skip'
    assert 'set avic_host_shutdown_guests: true' in guard['reason']
