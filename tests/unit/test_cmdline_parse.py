# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one kernel command-line splitter and editor (parse/cmdline.py), checked against the rules
of the kernel's own parser (lib/cmdline.c next_arg()) and the real command lines of the fixtures."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse

from conftest import write_host_tree


def test_split_kernel_args_keeps_quoted_values_whole():
    line = 'quiet dyndbg="file foo.c +p"  kvm-amd.avic=1'
    assert cmdline_parse.split_args(line) == ['quiet', 'dyndbg="file foo.c +p"', 'kvm-amd.avic=1']
    assert cmdline_parse.arg_key('kvm-amd.avic=1') == 'kvm_amd.avic'
    assert cmdline_parse.edit_cmdline(line, ['kvm_amd.avic=1']) == 'quiet dyndbg="file foo.c +p" kvm_amd.avic=1'
    # the kernel passes the value on without its quotes
    assert cmdline_parse.cmdline_value(cmdline_parse.split_args(line), 'dyndbg') == 'file foo.c +p'


@pytest.mark.parametrize('line, args', [
    # a quote may start in the middle of a word and the argument runs to the closing one
    ('a="b c"d e', ['a="b c"d', 'e']),
    # a whole argument in quotes is one argument
    ('"x=1 2" y', ['"x=1 2"', 'y']),
    # no backslash escapes: the backslash is an ordinary character and the next quote opens
    (r'a=\"b c\" d', [r'a=\"b c\"', 'd']),
    # single quotes are ordinary characters (shlex would join "'b" and "c'")
    ("a='b c' d", ["a='b", "c'", 'd']),
    # an unterminated quote runs to the end of the line
    ('quiet x="a b', ['quiet', 'x="a b']),
    # every kind of whitespace separates, runs of it count once
    ('a\tb\n  c', ['a', 'b', 'c']),
    ('', []),
    (None, []),
])
def test_split_follows_the_kernels_next_arg(line, args):
    assert cmdline_parse.split_args(line) == args


def test_arg_value_takes_the_quotes_off_as_the_kernel_does():
    assert cmdline_parse.arg_value('dyndbg="file foo.c +p"') == 'file foo.c +p'
    assert cmdline_parse.arg_value('root=/dev/sda1') == '/dev/sda1'
    assert cmdline_parse.arg_value('quiet') == ''
    assert cmdline_parse.arg_value('x="open') == 'open'


def test_cmdline_parsing():
    args = cmdline_parse.split_args('BOOT_IMAGE=/vmlinuz root="/dev/sda 1" amd_iommu=on iommu=pt '
                                    'kvm-amd.avic=1 kvm_amd.nested=0 quiet amd_iommu=off')
    assert cmdline_parse.cmdline_value(args, 'amd_iommu') == 'off'
    assert cmdline_parse.cmdline_value(args, 'quiet') == ''
    assert cmdline_parse.cmdline_value(args, 'iommu_intr') is None
    assert cmdline_parse.cmdline_module_options(args) == {'avic': '1', 'nested': '0'}
    assert 'root="/dev/sda 1"' in args and cmdline_parse.cmdline_value(args, 'root') == '/dev/sda 1'
    assert cmdline_parse.cmdline_module_options(['kvm_amd.avic="1"', 'kvm_amd.nested']) == \
        {'avic': '1', 'nested': '1'}


def test_edit_cmdline_keeps_the_users_arguments():
    line = 'quiet amd_iommu=off splash iommu=pt mitigations=off amd_iommu=off'
    assert cmdline_parse.edit_cmdline(line, ['amd_iommu=on', 'iommu=pt']) == \
        'quiet amd_iommu=on splash iommu=pt mitigations=off'
    assert cmdline_parse.edit_cmdline('', ['amd_iommu=on']) == 'amd_iommu=on'
    assert cmdline_parse.edit_cmdline('quiet amd_iommu_intr=legacy', [], ['amd_iommu_intr']) == 'quiet'
    # a quoted argument of the user stays byte for byte
    assert cmdline_parse.edit_cmdline('dyndbg="file foo.c +p" amd_iommu=off', ['amd_iommu=on']) == \
        'dyndbg="file foo.c +p" amd_iommu=on'


def test_needs_change():
    assert cmdline_parse.cmdline_needs_change('quiet amd_iommu=on iommu=pt', ['amd_iommu=on', 'iommu=pt']) is False
    assert cmdline_parse.cmdline_needs_change('quiet amd_iommu=off', ['amd_iommu=on']) is True
    assert cmdline_parse.cmdline_needs_change('amd_iommu=on amd_iommu=on', ['amd_iommu=on']) is True
    assert cmdline_parse.cmdline_needs_change('quiet amd_iommu_intr=legacy', [], ['amd_iommu_intr']) is True
    assert cmdline_parse.cmdline_needs_change(None, ['iommu=pt']) is None


def test_facts_split_proc_cmdline_the_kernels_way(tmp_path):
    # the facts, the audit rules and the editor read one line the same way: a quoted dyndbg
    # value holding "amd_iommu=off" is not an amd_iommu argument
    facts = gather_facts.gather(root=write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', files={
        '/proc/cmdline': 'root=/dev/sda1 dyndbg="amd_iommu=off +p" kvm_amd.avic=1 amd_iommu_intr=vapic\n'}))
    assert facts['iommu']['amd_iommu'] is None and facts['iommu']['amd_iommu_intr'] == 'vapic'
    assert facts['cmdline_kvm_amd'] == {'avic': '1'}
    assert 'iommu_disabled' not in [f['id'] for f in facts['findings']]
