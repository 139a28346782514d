# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.boot import target as boot_target

from conftest import FIXTURES, write_host_tree

QEMU_ARGV = ['/usr/bin/qemu-system-x86_64', '-name', 'guest=win10,debug-threads=on', '-S',
             '-machine', 'pc-q35-7.2,usb=off,dump-guest-core=off', '-accel', 'kvm', '-m', '8192']


def ids(facts):
    return sorted(f['id'] for f in facts['findings'])


def test_zen2_host_with_avic_off_and_new_options_pending(host_tree):
    root = host_tree(
        cpuinfo_name='zen2_epyc_7702.txt',
        params={'avic': 'N', 'npt': 'Y', 'nested': '1', 'force_avic': 'N', 'enable_ipiv': 'Y'},
        files={'/etc/modprobe.d/kvm.conf': 'options kvm-amd avic=1 nested=0\n',
               '/lib/modprobe.d/50-old.conf': 'options kvm_amd avic=0\n',
               '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
               '/boot/grub/grub.cfg': '',
               '/usr/sbin/update-initramfs': '', '/usr/sbin/update-grub': '',
               '/etc/initramfs-tools/modules': '# kvm_amd\nvfio_pci\n'},
        proc_version='Linux version 6.1.0-26-amd64 (gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP '
                     'PREEMPT_DYNAMIC Debian 6.1.112-1 (2024-09-30)\n')
    facts = gather_facts.gather(root=root)
    assert facts['cpu']['microarchitecture'] == 'zen2'
    assert facts['kernel'] == '6.1.0-26-amd64' and facts['kernel_upstream'] == '6.1.112'
    assert facts['avic'] is False and facts['nested'] is True
    # /etc wins over /lib only for the same file name; different names are all read, sorted.
    assert facts['modprobe']['read'] == ['/lib/modprobe.d/50-old.conf', '/etc/modprobe.d/kvm.conf']
    assert facts['configured_kvm_amd'] == {'avic': '1', 'nested': '0'}
    assert facts['pending'] == {'avic': {'configured': '1', 'running': 'N'},
                                'nested': {'configured': '0', 'running': '1'}}
    assert ids(facts) == ['avic_disabled', 'nested_enabled', 'pending_reload']
    assert facts['status'] == 'inactive'
    assert facts['boot_loader']['kind'] == 'grub'
    assert set(facts['boot_loader']['tools']) == {'update-grub'}
    assert facts['initramfs'] == {'tool': 'initramfs-tools', 'kvm_amd_listed': False,
                                  'command': '/usr/sbin/update-initramfs'}
    assert facts['dmesg'] is None and facts['container'] is None
    json.dumps(facts)


def test_zen4_host_active_with_a_running_guest(host_tree):
    root = host_tree(cpuinfo_name='zen4_epyc_9654.txt', kernel='6.8.0-45-generic',
                     params={'avic': 'Y', 'npt': 'Y', 'nested': '0', 'force_avic': 'N'},
                     cmdline='BOOT_IMAGE=/vmlinuz amd_iommu=on iommu=pt kvm_amd.avic=1',
                     files={'/sys/class/iommu/ivhd0/.keep': '',
                            '/boot/loader/loader.conf': 'timeout 3\n',
                            '/etc/kernel/cmdline': 'root=/dev/nvme0n1p2\n'},
                     guests={4242: QEMU_ARGV, 17: ['/usr/sbin/sshd', '-D']})
    facts = gather_facts.gather(root=root)
    assert facts['avic'] is True and facts['x2avic'] is True
    # amd_iommu=on on the command line is the only finding (it is not an AMD IOMMU option).
    assert facts['status'] == 'active' and ids(facts) == ['amd_iommu_on_noop']
    assert facts['cmdline_kvm_amd'] == {'avic': '1'} and facts['pending'] == {}
    assert facts['iommu']['amd_iommu'] == 'on' and facts['iommu']['iommu'] == 'pt'
    assert facts['iommu']['amd_vi'] is True
    assert facts['boot_loader']['kind'] == 'systemd-boot'
    guest = facts['guests'][0]
    assert len(facts['guests']) == 1
    assert (guest['pid'], guest['name'], guest['kvm'], guest['source']) == (4242, 'win10', True, 'libvirt')
    # qemu64 without -cpu, PIT in reinject mode: the command-line audit on this Zen 4 host
    assert [f['id'] for f in guest['findings']] == ['cpu_mode_not_host', 'pit_reinject']


def test_zen3_client_hidden_and_not_loaded_in_a_container(host_tree):
    root = host_tree(cpuinfo_name='zen3_ryzen_5950x.txt', files={'/run/.containerenv': ''})
    facts = gather_facts.gather(root=root)
    assert facts['cpu']['status'] == 'cpuid_hidden'
    assert ids(facts) == ['avic_cpuid_hidden', 'in_container', 'kvm_amd_not_loaded']
    assert facts['container'] == 'podman' and facts['status'] == 'inactive'


def test_forced_avic(host_tree):
    root = host_tree(cpuinfo_name='amd_vm_epyc_svm.txt',
                     params={'avic': 'Y', 'force_avic': 'Y', 'npt': 'Y', 'nested': '0'})
    facts = gather_facts.gather(root=root)
    # The TCG guest shows family 0x17 (EPYC model), so the kernel's erratum #1235 rule applies
    # to it: on 6.1 IPI virtualisation is on and the erratum counts as live.
    assert facts['status'] == 'active' and ids(facts) == ['avic_forced', 'ipiv_erratum_live']
    assert facts['cpu']['status'] == 'vm_no_avic'


def test_intel_and_vm_without_svm(host_tree, tmp_path):
    facts = gather_facts.gather(root=host_tree(cpuinfo_name='intel_xeon_gold_6338.txt'))
    assert ids(facts) == ['not_amd'] and facts['status'] == 'unsupported'
    other = tmp_path / 'vm'
    other.mkdir()
    from conftest import write_host_tree
    facts = gather_facts.gather(root=write_host_tree(other, cpuinfo_name='amd_vm_epyc_nosvm.txt'))
    assert ids(facts) == ['svm_unavailable'] and facts['status'] == 'unsupported'


def test_empty_root_reports_unknown_and_never_raises(tmp_path):
    facts = gather_facts.gather(root=str(tmp_path))
    assert facts['cpu']['vendor'] == 'unknown' and facts['status'] == 'unknown'
    assert ids(facts) == ['cpu_unknown'] and facts['kernel'] is None


def test_commands_run_only_on_the_real_root(host_tree):
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, '', ''
    gather_facts.gather(root=host_tree(cpuinfo_name='zen4_epyc_9654.txt',
                                       files={'/usr/bin/virsh': '', '/usr/sbin/libvirtd': ''}),
                        run=run, domains=True)
    assert calls == []


def test_dmesg_through_the_runner():
    # Root / with a runner that answers as dmesg would; only the log scan is asserted.
    outputs = {
        'dmesg': (0, '[    2.1] SVM: AVIC enabled\n[    2.2] SVM: x2AVIC enabled\n', ''),
    }

    def run(argv):
        return outputs.get(argv[0], (1, '', 'no such command'))
    facts = gather_facts.gather(root='/', run=run, guests=False)
    assert facts['dmesg']['avic_enabled'] is True and facts['dmesg']['x2avic_enabled'] is True
    assert facts['dmesg']['iommu_vapic'] is False
    assert facts['guests'] is None


def test_os_release_family_and_proxmox(tmp_path):
    cases = [('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n', 'Debian'),
             ('ID=ubuntu\nID_LIKE=debian\n', 'Debian'),
             ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', 'RedHat'),
             ('ID=arch\n', 'Archlinux'),
             ('ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n', 'Suse'),
             ('ID=gentoo\n', None)]
    for index, (text, family) in enumerate(cases):
        root = tmp_path / str(index)
        root.mkdir()
        facts = gather_facts.gather(root=write_host_tree(root, files={'/etc/os-release': text}))
        assert facts['os']['family'] == family, text
    assert facts['os']['id'] == 'gentoo' and facts['os']['proxmox'] is False
    pve = tmp_path / 'pve'
    pve.mkdir()
    facts = gather_facts.gather(root=write_host_tree(pve, files={
        '/etc/os-release': 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
        '/usr/bin/pveversion': '#!/bin/sh\n'}))
    assert facts['os'] == {'id': 'debian', 'id_like': [], 'version_id': '12', 'codename': 'bookworm',
                           'family': 'Debian', 'proxmox': True}


# --- the next boot's kernel command line (boot_cmdline) ---

CLOUD_GRUB = {
    '/etc/default/grub': 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="root=/dev/vda1 ro"\n'
                         'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n',
    '/etc/default/grub.d/40-force-partuuid.cfg': 'GRUB_FORCE_PARTUUID=0e7b2b4c-01\n',
    '/etc/default/grub.d/50-cloudimg-settings.cfg':
        '# Cloud Image specific Grub settings\n'
        'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0 amd_iommu=on iommu=pt"\n',
    '/etc/default/grub.d/init-select.cfg':
        'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT init=/lib/systemd/systemd"\n',
    '/etc/default/grub.d/README': 'GRUB_CMDLINE_LINUX_DEFAULT="not sourced"\n',
}


def test_grub_next_boot_line_follows_the_grub_d_files(host_tree):
    facts = gather_facts.gather(root=host_tree(cpuinfo_name='zen4_epyc_9654.txt', files=CLOUD_GRUB))
    assert facts['boot_cmdline'] == {
        'target': 'grub',
        'value': 'root=/dev/vda1 ro console=tty1 console=ttyS0 amd_iommu=on iommu=pt '
                 'init=/lib/systemd/systemd',
        'sources': ['/etc/default/grub', '/etc/default/grub.d/40-force-partuuid.cfg',
                    '/etc/default/grub.d/50-cloudimg-settings.cfg',
                    '/etc/default/grub.d/init-select.cfg'],
        'esp_modes': None}


def test_grub_line_that_cannot_be_parsed_is_none(host_tree):
    facts = gather_facts.gather(root=host_tree(files={
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt\n'}))
    assert facts['boot_cmdline'] == {'target': 'grub', 'value': None,
                                     'sources': ['/etc/default/grub'], 'esp_modes': None}


def test_missing_kernel_cmdline_is_none_and_an_empty_one_is_empty(tmp_path):
    loader = {'/boot/loader/loader.conf': 'timeout 3\n'}
    (tmp_path / 'missing').mkdir()
    (tmp_path / 'empty').mkdir()
    missing = gather_facts.gather(root=write_host_tree(tmp_path / 'missing', files=loader))
    assert missing['boot_cmdline'] == {'target': 'kernel_cmdline', 'value': None, 'sources': [],
                                       'esp_modes': None}
    empty = gather_facts.gather(root=write_host_tree(tmp_path / 'empty', files=dict(
        loader, **{'/etc/kernel/cmdline': '\n'})))
    assert empty['boot_cmdline'] == {'target': 'kernel_cmdline', 'value': '',
                                     'sources': ['/etc/kernel/cmdline'], 'esp_modes': None}


PVE_STATUS = ('Re-executing \'/usr/sbin/proxmox-boot-tool\' in new private mount namespace..\n'
              'System currently booted with uefi\n'
              '6E4D-1A2B is configured with: %s (versions: 6.8.12-4-pve, 6.8.12-5-pve)\n')


def proxmox_tree(host_tree):
    # Proxmox VE on ZFS booted through UEFI: both files exist, the ESP mode decides.
    return host_tree(cpuinfo_name='zen4_epyc_9654.txt', files={
        '/etc/kernel/proxmox-boot-uuids': '6E4D-1A2B\n',
        '/usr/sbin/proxmox-boot-tool': '#!/bin/sh\n',
        '/sys/firmware/efi/.keep': '',
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
                             'GRUB_CMDLINE_LINUX="root=ZFS=rpool/ROOT/pve-1 boot=zfs"\n',
        '/etc/kernel/cmdline': 'root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n'})


def test_proxmox_esp_modes_decide_the_target(host_tree):
    root = proxmox_tree(host_tree)
    reader = HostFiles(root=root)
    calls = []

    def runner(mode, rc=0):
        def run(argv):
            calls.append(argv)
            return rc, PVE_STATUS % mode, ''
        return run
    uefi = boot_target.next_boot_cmdline(reader, runner('uefi'))
    assert calls == [['/usr/sbin/proxmox-boot-tool', 'status']]
    assert uefi == {'target': 'kernel_cmdline',
                    'value': 'root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt',
                    'sources': ['/etc/kernel/cmdline'], 'esp_modes': ['uefi']}
    # Secure Boot: the ESPs carry GRUB although the host booted through UEFI
    grub = boot_target.next_boot_cmdline(reader, runner('grub'))
    assert grub == {'target': 'grub', 'value': 'root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet',
                    'sources': ['/etc/default/grub'], 'esp_modes': ['grub']}
    failed = boot_target.next_boot_cmdline(reader, runner('uefi', rc=2))
    assert failed['esp_modes'] is None and failed['target'] == 'kernel_cmdline'
    # below a root other than / no command runs, so the ESP modes stay unknown
    del calls[:]
    facts = gather_facts.gather(root=root, run=runner('grub'))
    assert calls == [] and facts['boot_cmdline']['esp_modes'] is None
    assert facts['boot_loader']['kind'] == 'proxmox-boot-tool'


# --- kernel log (dmesg) per kernel boundary ---------------------------------------------
# Lines as the kernels print them (format strings of arch/x86/kvm/svm/avic.c, svm.c and
# drivers/iommu/amd/init.c at each release; prefix "SVM: " before 6.3, "kvm_amd: " from 6.3).
DMESG_6_1_FORCED = (  # seen on Debian 12's 6.1 kernel in the VM lab with force_avic=1
    '[    3.101] kvm_amd: Setting dangerous option force_avic - tainting kernel\n'
    '[    3.102] SVM: AVIC is not supported in CPUID but force enabled\n'
    '[    3.102] SVM: Your system might crash and burn\n')
DMESG_6_17_ZEN4 = (
    '[    1.9] AMD-Vi: Interrupt remapping enabled\n'
    '[    1.9] AMD-Vi: Virtual APIC enabled\n'
    '[    4.2] kvm_amd: AVIC enabled\n'
    '[    4.2] kvm_amd: x2AVIC enabled\n')
DMESG_6_18_FORCED = (
    '[    3.1] kvm_amd: Setting dangerous option force_avic - tainting kernel\n'
    '[    3.2] kvm_amd: AVIC unsupported in CPUID but force enabled, your system might crash and burn\n'
    '[    3.2] kvm_amd: AVIC enabled\n')
DMESG_6_19_ZEN5 = (
    '[    4.2] kvm_amd: AVIC enabled\n'
    '[    4.2] kvm_amd: x2AVIC enabled (max 4096 vCPUs)\n')
DMESG_SNP = (
    '[    4.6] AMD-Vi: Force to disable Virtual APIC due to SNP\n'
    '[    9.1] kvm_amd: AVIC disabled: missing HvInUseWrAllowed on SNP-enabled system\n')
DMESG_FW_BUG = '[    4.2] kvm_amd: [Firmware Bug]: Cannot enable x2AVIC, AVIC is unsupported\n'


@pytest.mark.parametrize('text,expected', [
    (DMESG_6_1_FORCED, {'avic_forced': True, 'force_avic_taint': True, 'avic_enabled': False,
                        'prefix': None}),
    (DMESG_6_17_ZEN4, {'avic_enabled': True, 'x2avic_enabled': True, 'x2avic_max_vcpus': None,
                       'iommu_vapic': True, 'iommu_intremap': True, 'prefix': 'kvm_amd'}),
    (DMESG_6_18_FORCED, {'avic_forced': True, 'force_avic_taint': True, 'avic_enabled': True,
                         'x2avic_enabled': False}),
    (DMESG_6_19_ZEN5, {'x2avic_enabled': True, 'x2avic_max_vcpus': 4096}),
    (DMESG_SNP, {'iommu_vapic_snp_off': True, 'avic_snp_hvinusewr': True, 'iommu_vapic': False,
                 'avic_enabled': False}),
    (DMESG_FW_BUG, {'x2avic_fw_bug': True, 'x2avic_enabled': False}),
    ('[    2.1] SVM: AVIC enabled\n', {'avic_enabled': True, 'prefix': 'SVM'}),
    ('', {'avic_enabled': False, 'x2avic_max_vcpus': None, 'prefix': None}),
])
def test_parse_dmesg_across_kernels(text, expected):
    found = gather_facts.parse_dmesg(text)
    assert dict((k, found[k]) for k in expected) == expected


@pytest.mark.parametrize('text,finding', [
    (DMESG_SNP, ['avic_snp_hvinusewr', 'iommu_vapic_snp_off']),
    (DMESG_FW_BUG, ['x2avic_fw_bug']),
    (DMESG_6_17_ZEN4, []),
])
def test_dmesg_findings(text, finding, host_tree):
    facts = gather_facts.gather(root=host_tree(cpuinfo_name='zen4_epyc_9654.txt', kernel='6.18.2',
                                               params={'avic': 'N', 'npt': 'Y', 'nested': '0'}))
    from ansible_collections.vfio.avic.plugins.module_utils.rules import host as host_rules
    facts['dmesg'] = gather_facts.parse_dmesg(text)
    got = [f['id'] for f in host_rules.host_findings(facts)
           if f['id'] in ('avic_snp_hvinusewr', 'iommu_vapic_snp_off', 'x2avic_fw_bug')]
    assert sorted(got) == finding


# --- sysfs profiles per kernel boundary -----------------------------------------------------

def sysfs_host(tmp_path, profile, cpuinfo_name, kernel):
    root = write_host_tree(tmp_path, cpuinfo_name=cpuinfo_name, kernel=kernel)
    shutil.copytree(os.path.join(FIXTURES, 'sys_module', profile), os.path.join(root, 'sys', 'module'))
    return gather_facts.gather(root=root)


def test_zen2_on_6_16_has_erratum_1235_live(tmp_path):
    facts = sysfs_host(tmp_path, 'zen2_avic_on_6_16', 'zen2_epyc_7702.txt', '6.16.12')
    assert 'enable_ipiv' not in facts['kvm_amd']['parameters']
    live = [f for f in facts['findings'] if f['id'] == 'ipiv_erratum_live']
    assert len(live) == 1 and live[0]['severity'] == 'warning'
    assert 'predates the workaround' in live[0]['message'] and 'enable_ipiv=0' in live[0]['fix']


def test_zen2_on_6_17_has_ipiv_off(tmp_path):
    facts = sysfs_host(tmp_path, 'zen2_avic_on_erratum', 'zen2_epyc_7702.txt', '6.17.0')
    assert [f['id'] for f in facts['findings'] if f['id'].startswith('ipiv')] == ['ipiv_erratum']


def test_hygon_on_6_18_34_still_live_with_ipiv_on(tmp_path):
    facts = sysfs_host(tmp_path, 'zen4_avic_on', 'hygon_c86_7185.txt', '6.18.34')
    assert 'ipiv_erratum_live' in ids(facts)


def test_device_posted_irqs_off_is_read_from_sysfs(tmp_path):
    facts = sysfs_host(tmp_path, 'zen4_no_posted_irqs', 'zen4_epyc_9654.txt', '6.18.2')
    assert facts['kvm_amd']['parameters']['enable_device_posted_irqs'] == 'N'
    assert 'device_posted_irqs_off' in ids(facts)
    assert 'ipiv_erratum' not in ' '.join(ids(facts))


def test_pre_zen_host_is_unsupported(host_tree):
    facts = gather_facts.gather(root=host_tree(cpuinfo_name='piledriver_fx_8350.txt',
                                               params={'avic': 'N', 'npt': 'Y', 'nested': '1'}))
    assert facts['cpu']['status'] == 'no_avic_hardware' and facts['status'] == 'unsupported'
    assert 'no_avic_hardware' in ids(facts) and 'avic_cpuid_hidden' not in ids(facts)


def test_vm_with_nested_svm_not_forced(host_tree):
    facts = gather_facts.gather(root=host_tree(cpuinfo_name='amd_vm_epyc_svm.txt', kernel='6.17.0',
                                               params={'avic': 'N', 'npt': 'Y', 'nested': '0'}))
    assert 'vm_no_avic' in ids(facts) and 'avic_cpuid_hidden' not in ids(facts)


def test_x2avic_visibility_follows_the_running_kernel(host_tree):
    old = gather_facts.gather(root=host_tree(cpuinfo_name='zen3_epyc_7763.txt', kernel='5.15.0-119-generic'))
    assert old['cpu']['x2avic_visible'] is False
    assert 'not visible on this kernel' in old['cpu']['message']
