# -*- coding: utf-8 -*-
"""The host role's vars hold the commands each family needs, and the role's argument
specs accept exactly what its tasks and modules act on."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re

import yaml

from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.parse import os_release
from ansible_collections.vfio.avic.plugins.module_utils.boot import target as boot_target
from ansible_collections.vfio.avic.plugins.module_utils.plan import cmdline as cmdline_plan

from conftest import REPO, role_vars

HOST = os.path.join(REPO, 'roles', 'host')


def load(*parts):
    with open(os.path.join(*parts)) as handle:
        return yaml.safe_load(handle)


def main_vars():
    return load(HOST, 'vars', 'main.yml')


def test_the_vars_file_names_only_role_variables():
    data = main_vars()
    assert isinstance(data, dict) and data
    assert all(k.startswith('__avic_host_') for k in data)
    # every family avic_facts reports has its grub.cfg command
    assert set(f for f, _ids in os_release.OS_FAMILIES) <= set(data['__avic_host_grub_mkconfig_by_family'])


def grub_mkconfig(family):
    """The command the handler runs on a host of OS family ``family``, as Ansible templates it."""
    return role_vars('host', family, ['__avic_host_grub_mkconfig'])['__avic_host_grub_mkconfig']


def test_boot_loader_commands_per_family():
    assert grub_mkconfig('Debian') == ['update-grub']
    assert grub_mkconfig('RedHat') == ['grub2-mkconfig', '-o', '/boot/grub2/grub.cfg']
    assert grub_mkconfig('Suse') == ['grub2-mkconfig', '-o', '/boot/grub2/grub.cfg']
    assert grub_mkconfig('Archlinux') == ['grub-mkconfig', '-o', '/boot/grub/grub.cfg']
    for family in ('Gentoo', '', None):
        assert grub_mkconfig(family) == ['grub-mkconfig', '-o', '/boot/grub/grub.cfg'], family
    for family in ('Debian', 'RedHat', 'Suse', 'Archlinux', None):
        assert grub_mkconfig(family)[0] in avic_gather_tools(), family
    assert main_vars()['__avic_host_refresh_commands']['proxmox-boot-tool'] == ['proxmox-boot-tool', 'refresh']


def avic_gather_tools():
    """The boot tools avic_facts looks for: a handler only runs a command it found."""
    return set(boot_target.BOOT_TOOLS)


def test_initramfs_commands_per_tool_cover_every_family():
    commands = main_vars()['__avic_host_initramfs_commands']
    assert commands['initramfs-tools'] == ['update-initramfs', '-u', '-k', 'all']   # Debian, Ubuntu
    assert commands['dracut'][0] == 'dracut' and '--force' in commands['dracut']     # RedHat, Suse
    assert commands['mkinitcpio'] == ['mkinitcpio', '-P']                            # Arch
    # avic_facts names the tool and its command the same way the handler looks them up
    import inspect
    source = inspect.getsource(gather_facts._initramfs)
    for tool, argv in commands.items():
        assert "'%s': '%s'" % (tool, argv[0]) in source, tool


def test_redhat_prefers_grubby_with_bls_entries_and_still_edits_grub_default():
    def exists_of(*paths):
        return lambda p: p in paths
    fedora = exists_of('/etc/default/grub', '/boot/loader/entries')
    assert boot_target.cmdline_target(fedora, has_grubby=True) == 'grubby'
    assert boot_target.cmdline_target(exists_of('/etc/default/grub'), has_grubby=True) == 'grub'
    with open(os.path.join(REPO, 'plugins', 'modules', 'avic_cmdline.py')) as handle:
        source = handle.read()
    assert "'--update-kernel=ALL'" in source
    assert 'edit_grub(files, module, args, remove, changes, notes)' in source.split('def run(')[1]


def specs(role, entry='main'):
    return load(REPO, 'roles', role, 'meta', 'argument_specs.yml')['argument_specs'][entry]['options']


def task_text(role):
    text = ''
    for path in sorted(glob.glob(os.path.join(REPO, 'roles', role, '*', '*.yml'))):
        if '/meta/' not in path:
            with open(path) as handle:
                text += handle.read()
    return text


def compared_values(text, variable):
    return set(re.findall(r"%s\s*==\s*'([^']*)'" % re.escape(variable), text)) | \
        set(v for group in re.findall(r"%s\s+in\s+\[([^\]]*)\]" % re.escape(variable), text)
            for v in re.findall(r"'([^']*)'", group))


def test_choices_match_what_the_tasks_and_modules_accept():
    options = specs('host')
    defaults = load(HOST, 'defaults', 'main.yml')
    for name, spec in options.items():
        if 'choices' in spec:
            assert defaults[name] in spec['choices'], name
        assert spec.get('default') == defaults[name], name
    text = task_text('host')
    reload_choices = set(options['avic_host_reload_module']['choices'])
    # every value the tasks compare with is a choice; the choices the tasks never name act as "never"
    assert compared_values(text, 'avic_host_reload_module') == reload_choices - {'never'}
    from ansible_collections.vfio.avic.plugins.modules import avic_cmdline
    module_targets = yaml.safe_load(avic_cmdline.DOCUMENTATION)['options']['target']['choices']
    assert options['avic_host_boot_config']['choices'] == module_targets
    assert set(options['avic_host_iommu_intr']['choices']) == {''} | set(cmdline_plan.IOMMU_INTR)
    for value in options['avic_host_iommu_intr']['choices']:
        cmdline_plan.owned_args(['iommu=pt'], value or None)


def test_reboot_role_specs_defaults_and_callers_agree():
    main, guests = specs('_reboot'), specs('_reboot', 'guests')
    defaults = load(REPO, 'roles', '_reboot', 'defaults', 'main.yml')
    assert set(main) == set(defaults)
    for name, spec in list(main.items()) + list(guests.items()):
        assert spec.get('default') == defaults[name], name
    for role in ('host', 'kernel'):
        with open(os.path.join(REPO, 'roles', role, 'tasks', 'reboot.yml')) as handle:
            text = handle.read()
        assert 'name: vfio.avic._reboot' in text, role
        passed = set(re.findall(r'^\s+(avic_reboot_\w+):', text, re.M))
        assert passed and passed <= set(main), role
        assert 'ansible.builtin.reboot' not in text, 'the reboot itself lives in the reboot role'
    reboot_tasks = task_text('_reboot')
    assert 'throttle: 1' in reboot_tasks and 'ansible.builtin.reboot' in reboot_tasks
    assert 'unnamed' not in reboot_tasks + task_text('host')
    assert compared_values(reboot_tasks, 'avic_reboot_guard.action') <= {'proceed', 'shutdown', 'skip', 'report'}
