# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one boot-target detector (boot/target.py): the rule, the Proxmox ESP modes and the facts' next-boot line."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse
from ansible_collections.vfio.avic.plugins.module_utils.boot import target as boot_target
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts

from conftest import write_host_tree


def facts_for(tmp_path, cpuinfo_name, kernel='6.1.0-26-amd64', params=None, files=None):
    return gather_facts.gather(root=write_host_tree(tmp_path, cpuinfo_name=cpuinfo_name, kernel=kernel,
                                                    params=params, files=files))


def test_cmdline_target_and_needs_change():
    def exists_of(*paths):
        return lambda p: p in paths
    assert boot_target.cmdline_target(exists_of('/etc/default/grub')) == 'grub'
    # Proxmox booted through BIOS is GRUB (proxmox-boot-tool refresh runs grub there)
    assert boot_target.cmdline_target(exists_of('/etc/default/grub', '/etc/kernel/proxmox-boot-uuids')) == 'grub'
    assert boot_target.cmdline_target(exists_of('/etc/default/grub', '/etc/kernel/proxmox-boot-uuids',
                                                '/sys/firmware/efi', '/etc/kernel/cmdline')) == 'kernel_cmdline'
    assert boot_target.cmdline_target(exists_of('/boot/loader/loader.conf')) == 'kernel_cmdline'
    assert boot_target.cmdline_target(exists_of(), has_grubby=True) == 'grubby'
    assert boot_target.cmdline_target(exists_of()) == 'none'
    assert cmdline_parse.cmdline_needs_change('quiet amd_iommu=on iommu=pt', ['amd_iommu=on', 'iommu=pt']) is False
    assert cmdline_parse.cmdline_needs_change('quiet amd_iommu=off', ['amd_iommu=on']) is True
    assert cmdline_parse.cmdline_needs_change('amd_iommu=on amd_iommu=on', ['amd_iommu=on']) is True
    assert cmdline_parse.cmdline_needs_change('quiet amd_iommu_intr=legacy', [], ['amd_iommu_intr']) is True
    assert cmdline_parse.cmdline_needs_change(None, ['iommu=pt']) is None


def test_cmdline_target_rule():
    def exists_of(*paths):
        return lambda p: p in paths
    pve = ('/etc/kernel/proxmox-boot-uuids', '/etc/default/grub')
    assert boot_target.cmdline_target(exists_of(*pve), proxmox_modes={'grub'}) == 'grub'
    assert boot_target.cmdline_target(exists_of(*pve), proxmox_modes={'uefi'}) == 'kernel_cmdline'
    assert boot_target.cmdline_target(exists_of(*(pve + ('/sys/firmware/efi',)))) == 'grub'
    assert boot_target.cmdline_target(exists_of('/etc/kernel/proxmox-boot-uuids', '/sys/firmware/efi')) == 'kernel_cmdline'
    # a systemd-boot loader.conf next to /etc/default/grub counts only on a UEFI boot
    both = ('/boot/efi/loader/loader.conf', '/etc/default/grub')
    assert boot_target.cmdline_target(exists_of(*both)) == 'grub'
    assert boot_target.cmdline_target(exists_of(*(both + ('/sys/firmware/efi',)))) == 'kernel_cmdline'
    # Fedora/RHEL: BLS entries and grubby
    fedora = ('/etc/default/grub', '/boot/loader/entries')
    assert boot_target.cmdline_target(exists_of(*fedora), has_grubby=True) == 'grubby'
    assert boot_target.cmdline_target(exists_of(*fedora)) == 'grub'
    assert 'proxmox-boot-tool status' in boot_target.TARGET_RULE
    status = ('Re-executing \'/usr/sbin/proxmox-boot-tool\' in new private mount namespace..\n'
              'System currently booted with uefi\n'
              '4A5B-1C2D is configured with: uefi (versions: 6.8.12-4-pve)\n'
              '4A5B-1C2E is configured with: grub (versions: 6.8.12-4-pve)\n')
    assert boot_target.proxmox_boot_modes(status) == {'uefi', 'grub'}
    assert boot_target.proxmox_boot_modes('') == set()


def test_facts_carry_the_configured_command_line_and_kernel_packages(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    dpkg = ('Package: linux-image-6.1.0-26-amd64\nStatus: hold ok installed\nVersion: 6.1.112-1\n\n'
            'Package: linux-image-amd64\nStatus: install ok installed\nVersion: 6.1.112-1\n\n'
            'Package: linux-image-6.1.0-9-amd64\nStatus: deinstall ok config-files\n\n'
            'Package: bash\nStatus: install ok installed\n')
    facts = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', files={
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n', '/var/lib/dpkg/status': dpkg})
    assert facts['boot_cmdline'] == {'target': 'grub', 'value': 'quiet iommu=pt',
                                     'sources': ['/etc/default/grub'], 'esp_modes': None}
    assert facts['kernel_packages'] == [
        {'package': 'linux-image-6.1.0-26-amd64', 'release': '6.1.0-26-amd64', 'held': True, 'version': '6.1.112-1'},
        {'package': 'linux-image-amd64', 'release': None, 'held': False, 'version': '6.1.112-1'}]
    other = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', files={'/etc/kernel/cmdline': 'root=ZFS=x  boot=zfs\n'})
    assert other['boot_cmdline'] == {'target': 'kernel_cmdline', 'value': 'root=ZFS=x boot=zfs',
                                     'sources': ['/etc/kernel/cmdline'], 'esp_modes': None}
    assert other['kernel_packages'] is None
