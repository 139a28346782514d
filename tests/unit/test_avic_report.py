# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.plugin_utils import report as reporting

from conftest import write_host_tree


def _host(tmp_path, name, **kw):
    root = tmp_path / name
    root.mkdir()
    return gather_facts.gather(root=write_host_tree(root, **kw))


def test_host_summary_and_report_lines(tmp_path, domain_xml):
    facts = _host(tmp_path, 'zen2', cpuinfo_name='zen2_epyc_7702.txt',
                  params={'avic': 'N', 'npt': 'Y', 'nested': '1'},
                  files={'/etc/modprobe.d/kvm.conf': 'options kvm_amd avic=1\n'})
    domains = [reporting.domain_result('win', [{'id': 'pit_reinject', 'severity': 'inhibit',
                                                'message': 'PIT', 'fix': 'discard'}], True),
               reporting.domain_result('lin', [], False)]
    summary = reporting.host_summary('zen2', facts, domains)
    assert summary['status'] == 'inactive' and summary['generation'] == 'Zen 2'
    assert summary['inhibits'] == ['avic_disabled'] and summary['pending'] == ['avic']
    assert (summary['guests_total'], summary['guests_ready'], summary['guests_inhibited']) == (2, 1, 1)
    lines = reporting.host_report_lines(summary, facts, domains)
    assert lines[0] == 'zen2: AVIC INACTIVE'
    assert any('avic=N' in line and 'nested=1' in line for line in lines)
    assert any(line.startswith('  [INHIBIT] avic_disabled:') for line in lines)
    assert any('fix: ' in line for line in lines)
    assert '  guest win (running): inhibited' in lines
    assert '    [INHIBIT] pit_reinject: PIT' in lines


def test_fleet_table_counts_and_aligns(tmp_path):
    rows = [
        reporting.host_summary('b-zen4', _host(tmp_path, 'z4', cpuinfo_name='zen4_epyc_9654.txt',
                                               params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})),
        reporting.host_summary('a-intel', _host(tmp_path, 'in', cpuinfo_name='intel_xeon_gold_6338.txt')),
        reporting.host_summary('c-empty', _host(tmp_path, 'em')),
    ]
    table = reporting.fleet_table(rows)
    assert table[0].split()[:3] == ['host', 'cpu', 'kernel']
    assert table[2].startswith('a-intel') and table[3].startswith('b-zen4')
    assert 'Zen 4' in table[3] and 'active' in table[3]
    assert len(set(len(line.rstrip()) <= len(table[1]) for line in table[:-1])) == 1
    assert table[-1] == '3 hosts: 1 active, 0 inactive, 1 unsupported, 1 unknown; guests 0 ready, 0 inhibited'
    assert reporting.fleet_totals(rows)['active'] == 1


def test_fleet_markdown_lists_hosts_and_guests(tmp_path):
    facts = _host(tmp_path, 'z2', cpuinfo_name='zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y'})
    domains = [reporting.domain_result('win|10', [{'id': 'hyperv_synic', 'severity': 'inhibit',
                                                   'message': 'm', 'fix': 'f'}], True),
               reporting.domain_result('broken', [], False, 'not well-formed')]
    rows = [reporting.host_summary('z2', facts, domains)]
    text = '\n'.join(reporting.fleet_markdown(rows, {'z2': domains}))
    assert text.startswith('# AVIC fleet report')
    assert '| z2 | AMD EPYC 7702 64-Core Processor | Zen 2 | 6.1.0-26-amd64 | inactive | - | 0/0/1/2 | avic_disabled |' in text
    assert '| z2 | win\\|10 | running | inhibited | hyperv_synic | - |' in text
    assert '| z2 | broken | shut off | unreadable | not well-formed | - |' in text


HOSTILE = ['win|10', 'a`b`c', '<script>alert(1)</script>', '**bold** _it_', 'x\\|y', '[link](http://x)',
           'pipe | and `tick|`', 'new\nline', '~~gone~~ &amp;']


def test_hostile_guest_names_render_as_written_in_the_markdown_table(tmp_path):
    """Rendered by a real CommonMark parser with GitHub's tables: each name is one cell, verbatim."""
    from markdown_it import MarkdownIt
    facts = _host(tmp_path, 'z2', cpuinfo_name='zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y'})
    domains = [reporting.domain_result(name, [], True) for name in HOSTILE]
    rows = [reporting.host_summary('z2', facts, domains)]
    text = '\n'.join(reporting.fleet_markdown(rows, {'z2': domains}))
    tokens = MarkdownIt('commonmark').enable('table').parse(text)
    assert not [t for t in tokens if t.type in ('html_block', 'html_inline')]
    cells, row, in_guests = [], None, False
    for i, token in enumerate(tokens):
        if token.type == 'heading_open':
            in_guests = tokens[i + 1].content == 'Guests'
        if not in_guests:
            continue
        if token.type == 'tr_open':
            row = []
        elif token.type == 'inline' and row is not None:
            children = token.children or []
            assert all(c.type in ('text', 'softbreak') for c in children), (token.content, children)
            row.append(''.join(c.content for c in children))
        elif token.type == 'tr_close':
            cells.append(row)
            row = None
    names = [r[1] for r in cells[1:]]
    assert names == [' '.join(n.split()) for n in HOSTILE]
    assert all(len(r) == len(cells[0]) for r in cells), 'a name split a row into more cells'


def _fleet(tmp_path):
    from ansible_collections.vfio.avic.plugins.plugin_utils import fleet
    facts = _host(tmp_path, 'z2', cpuinfo_name='zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y'})
    return fleet.fleet_report([{'name': 'zen2-ünïcode', 'facts': facts}, {'name': 'down'}])


def test_report_files_are_what_the_role_wrote_before(tmp_path):
    """The JSON is Ansible's to_nice_json of schema 2 (non-ASCII escaped), the Markdown the table."""
    from ansible.plugins.filter.core import to_nice_json
    report = _fleet(tmp_path)
    files = reporting.report_files(report)
    assert files['.json'] == to_nice_json({'schema': 2, 'totals': report['totals'],
                                           'hosts': report['records']}) + '\n'
    assert 'zen2-ünïcode' in json.loads(files['.json'])['hosts']
    assert files['.md'] == '\n'.join(reporting.fleet_markdown(report['rows'], report['guests'])) + '\n'


def test_report_files_are_written_whole_and_replace_the_old_ones(tmp_path):
    report = _fleet(tmp_path)
    directory = tmp_path / 'reports' / 'fleet'
    paths = reporting.write_report_files(str(directory), 'avic-audit', report)
    assert paths == [str(directory / 'avic-audit.json'), str(directory / 'avic-audit.md')]
    assert sorted(p.name for p in directory.iterdir()) == ['avic-audit.json', 'avic-audit.md']
    assert all(oct(os.stat(p).st_mode & 0o777) == '0o644' for p in paths)
    assert json.loads((directory / 'avic-audit.json').read_text(encoding='utf-8'))['totals']['hosts'] == 2
    (directory / 'avic-audit.md').write_text('old\n')
    reporting.write_report_files(str(directory), 'avic-audit', report)
    assert (directory / 'avic-audit.md').read_text(encoding='utf-8').startswith('# AVIC fleet report')
    assert sorted(p.name for p in directory.iterdir()) == ['avic-audit.json', 'avic-audit.md']


def test_a_report_that_cannot_be_written_leaves_no_part_behind(tmp_path):
    """A rename that fails (here: a directory where the JSON file goes, which stops root too)
    raises OSError and leaves neither a temporary file nor a changed file."""
    report = _fleet(tmp_path)
    directory = tmp_path / 'reports'
    (directory / 'avic-audit.json').mkdir(parents=True)
    (directory / 'avic-audit.json' / 'kept').write_text('x\n')
    with pytest.raises(OSError):
        reporting.write_report_files(str(directory), 'avic-audit', report)
    assert sorted(p.name for p in directory.iterdir()) == ['avic-audit.json']
    assert [p.name for p in (directory / 'avic-audit.json').iterdir()] == ['kept']
