# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GRUB's default files lexed and edited token by token (parse/grub_shell.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.parse import grub_shell
from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles

from conftest import write_host_tree


def edit_one(text, ensure, remove=()):
    """/etc/default/grub ``text`` after edit_grub_files() on that file alone."""
    result = grub_shell.edit_grub_files([(grub_shell.GRUB_DEFAULT_FILE, text)], ensure, remove)
    return result['texts'].get(grub_shell.GRUB_DEFAULT_FILE, text)


def line_of(text):
    """The command line a normal GRUB entry gets from /etc/default/grub ``text`` alone."""
    return grub_shell.grub_line([(grub_shell.GRUB_DEFAULT_FILE, text)])


ARGS = ['amd_iommu=on', 'iommu=pt']


GRUB = '''# If you change this file, run 'update-grub' afterwards
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80"
GRUB_CMDLINE_LINUX=""
'''


def test_default_grub_edit_touches_only_its_arguments():
    out = edit_one(GRUB, ['amd_iommu=on', 'iommu=pt'])
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt"\n' in out
    assert out.replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt"',
                       'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80"') == GRUB
    assert edit_one(out, ['amd_iommu=on', 'iommu=pt']) == out, 'idempotent'
    assert line_of(out) == 'quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt'


def test_default_grub_single_quotes_export_and_missing_line():
    text = "export GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n"
    assert edit_one(text, ['iommu=pt']) == "export GRUB_CMDLINE_LINUX_DEFAULT='quiet iommu=pt'\n"
    assert edit_one('GRUB_TIMEOUT=5', ['iommu=pt']) == \
        'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'
    with pytest.raises(grub_shell.ShellParseError, match='quoting'):
        edit_one('GRUB_CMDLINE_LINUX_DEFAULT="quiet\n', ['iommu=pt'])


def grub_edit(value, tail='\n', ensure=None, remove=()):
    """Edit a one-variable file; return (new file, new line) and check the second run is a no-op."""
    ensure = ARGS if ensure is None else ensure
    text = '# top\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=%s%sGRUB_TIMEOUT=5\n' % (value, tail)
    out = edit_one(text, ensure, remove)
    assert edit_one(out, ensure, remove) == out, 'a second run changes nothing'
    assert out.startswith('# top\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=')
    assert out.endswith('%sGRUB_TIMEOUT=5\n' % tail)
    return out.split('\n')[2], line_of(out)


def test_grub_escaped_quotes_stay_as_written():
    line, value = grub_edit(r'"quiet dyndbg=\"file foo.c +p\" splash"')
    assert line == r'GRUB_CMDLINE_LINUX_DEFAULT="quiet dyndbg=\"file foo.c +p\" splash amd_iommu=on iommu=pt"'
    assert value == 'quiet dyndbg="file foo.c +p" splash amd_iommu=on iommu=pt'


def test_grub_single_quoted_and_unquoted_values():
    assert grub_edit("'quiet splash'")[0] == "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash amd_iommu=on iommu=pt'"
    assert grub_edit('quiet')[0] == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"'
    assert grub_edit('')[0] == 'GRUB_CMDLINE_LINUX_DEFAULT="amd_iommu=on iommu=pt"'
    assert grub_edit('""')[0] == 'GRUB_CMDLINE_LINUX_DEFAULT="amd_iommu=on iommu=pt"'


def test_grub_text_after_the_closing_quote_is_kept_exactly():
    line, value = grub_edit('"quiet"', tail='; GRUB_TIMEOUT_STYLE=menu\n')
    assert line == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"; GRUB_TIMEOUT_STYLE=menu'
    line, value = grub_edit('"quiet"', tail='   # keep me "quoted" too\n')
    assert line == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"   # keep me "quoted" too'
    assert value == 'quiet amd_iommu=on iommu=pt'


def test_grub_replaces_and_removes_in_place_keeping_the_rest():
    line, _value = grub_edit('"amd_iommu=off  quiet   amd_iommu_intr=legacy splash amd-iommu=off"',
                             remove=['amd_iommu_intr'])
    assert line == 'GRUB_CMDLINE_LINUX_DEFAULT="amd_iommu=on  quiet splash iommu=pt"'


def test_grub_line_over_several_lines_and_expansions():
    text = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet\n  splash $EXTRA"\n'
    out = edit_one(text, ARGS)
    assert out == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet\n  splash $EXTRA amd_iommu=on iommu=pt"\n'
    assert line_of(out) == 'quiet splash $EXTRA amd_iommu=on iommu=pt'


def test_grub_cmdline_linux_is_read_with_the_default_line():
    text = 'GRUB_CMDLINE_LINUX="rd.lvm.lv=vg/root iommu=pt amd_iommu=off"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
    out = edit_one(text, ARGS)
    assert out == ('GRUB_CMDLINE_LINUX="rd.lvm.lv=vg/root iommu=pt amd_iommu=on"\n'
                   'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    assert line_of(out) == 'rd.lvm.lv=vg/root iommu=pt amd_iommu=on quiet'
    assert edit_one(out, ARGS) == out


def test_grub_bad_quoting_is_refused_with_file_and_line():
    for text in ('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet\n', "GRUB_CMDLINE_LINUX_DEFAULT='quiet\n"):
        with pytest.raises(grub_shell.ShellParseError, match=r'/etc/default/grub line \d+ .*fix its quoting'):
            edit_one(text, ARGS)


def test_grub_d_file_that_wins_is_edited_and_named():
    main = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n'
    cloud = '# Set the default commandline\nGRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n'
    sources = [('/etc/default/grub', main), ('/etc/default/grub.d/50-cloudimg-settings.cfg', cloud)]
    result = grub_shell.edit_grub_files(sources, ARGS)
    assert result['before'] == 'console=tty1 console=ttyS0'
    assert result['after'] == 'console=tty1 console=ttyS0 amd_iommu=on iommu=pt'
    assert list(result['texts']) == ['/etc/default/grub.d/50-cloudimg-settings.cfg']
    assert result['texts']['/etc/default/grub.d/50-cloudimg-settings.cfg'] == cloud.replace(
        'ttyS0"', 'ttyS0 amd_iommu=on iommu=pt"')
    assert '50-cloudimg-settings.cfg' in result['notes'][0] and 'wins' in result['notes'][0]
    # a drop-in that extends the main value: the main file's conflicting argument is fixed there
    extend = [('/etc/default/grub', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=off"\n'),
              ('/etc/default/grub.d/90-local.cfg', 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT mitigations=off"\n')]
    result = grub_shell.edit_grub_files(extend, ARGS)
    assert result['texts'] == {
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on"\n',
        '/etc/default/grub.d/90-local.cfg':
            'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT mitigations=off iommu=pt"\n'}
    assert result['after'] == 'quiet amd_iommu=on mitigations=off iommu=pt'


def test_grub_sources_and_next_boot_read_the_drop_ins(tmp_path):
    root = write_host_tree(tmp_path, cpuinfo_name='zen2_epyc_7702.txt', files={
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"\n',
        '/etc/default/grub.d/50-cloudimg-settings.cfg': 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"\n',
        '/etc/default/grub.d/README': 'GRUB_CMDLINE_LINUX_DEFAULT="ignored"\n'})
    reader = HostFiles(root=root)
    sources = grub_shell.grub_sources(reader.read, reader.listdir)
    assert [p for p, _t in sources] == ['/etc/default/grub', '/etc/default/grub.d/50-cloudimg-settings.cfg']
    assert grub_shell.grub_next_boot(reader.read, reader.listdir) == 'console=ttyS0'
