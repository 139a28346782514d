"""Testinfra checks of the host role on the simulated fleet (run by verify.yml).

Run by hand after `molecule converge -s host`:
python -m pytest molecule/host/tests --hosts=podman://host-zen2,podman://host-intel
"""

import re

MANAGED = '/etc/modprobe.d/vfio-avic-kvm_amd.conf'
USER_GRUB = 'quiet splash vfio-pci.ids=10de:1b80,10de:10f0'
CONFIGURED = {'host-zen2', 'host-zen4', 'host-zen3force'}
UNTOUCHED = {'host-zen3', 'host-nosvm', 'host-intel'}


def name(host):
    return host.backend.get_hostname()


def grub_default(host):
    text = host.file('/etc/default/grub').content_string
    return re.search(r'^GRUB_CMDLINE_LINUX_DEFAULT="(.*)"$', text, re.M).group(1)


def test_managed_file_only_where_the_role_configures(host):
    managed = host.file(MANAGED)
    if name(host) not in CONFIGURED:
        assert not managed.exists
        return
    assert managed.is_file and managed.user == 'root' and managed.group == 'root'
    assert managed.mode == 0o644
    lines = managed.content_string.splitlines()
    assert lines[0].startswith('# Managed by Ansible (vfio.avic.host)')
    want = 'options kvm_amd avic=1 npt=1 nested=0'
    if name(host) == 'host-zen3force':
        want += ' force_avic=1'
    assert lines[-1] == want
    assert [ln for ln in lines if not ln.startswith('#')] == [want]


def test_untouched_hosts_are_byte_for_byte_as_before(host):
    if name(host) not in UNTOUCHED:
        return
    now = host.check_output("find /etc /boot -type f -exec sha256sum {} + | LC_ALL=C sort -k 2")
    before = host.file('/var/lib/vfio-avic-lab/before.txt').content_string
    assert now.strip() == before.strip()


def test_grub_default_line_keeps_the_users_arguments(host):
    if not host.file('/etc/default/grub').exists:
        return
    value = grub_default(host)
    if name(host) == 'host-zen2':
        assert value == USER_GRUB + ' iommu=pt'
        text = host.file('/etc/default/grub').content_string
        assert 'GRUB_TIMEOUT=5\n' in text and 'GRUB_CMDLINE_LINUX=""\n' in text
        assert text.count('amd_iommu=') == 0, 'amd_iommu=off removed as asked'
    else:
        assert value == USER_GRUB + ' amd_iommu=off'


def test_kernel_cmdline_file_on_the_systemd_boot_host(host):
    if name(host) != 'host-zen4':
        return
    assert host.file('/etc/kernel/cmdline').content_string == 'root=UUID=0b4c1b2e rw quiet iommu=pt\n'
    assert not host.file('/etc/default/grub').exists


def test_conflicting_options_commented_out_with_a_backup(host):
    if name(host) != 'host-zen2':
        return
    assert host.file('/etc/modprobe.d/kvm.conf').content_string == (
        '# from a forum post\n'
        '# options kvm_amd nested=1 sev=0  # disabled by vfio.avic.host\n'
        'options kvm_amd sev=0\n')
    backups = host.check_output('ls /etc/modprobe.d/ /etc/default/').split()
    assert any(b.startswith('kvm.conf.') and b.endswith('~') for b in backups)
    assert any(b.startswith('grub.') and b.endswith('~') for b in backups)
    backup = host.check_output('ls /etc/modprobe.d/kvm.conf.*~ | head -1')
    assert 'options kvm_amd nested=1 sev=0' in host.file(backup).content_string


def test_simulated_hardware_is_read_only_and_unchanged(host):
    assert host.mount_point('/proc/cpuinfo').exists
    assert host.mount_point('/sys/module').exists
    if name(host) == 'host-zen2':
        assert host.file('/sys/module/kvm_amd/parameters/avic').content_string.strip() == 'N'
