"""Testinfra checks on the real kernel of the lab VM, after converge (run by verify.yml)."""

import json


def params(host):
    base = '/sys/module/kvm_amd/parameters/'
    return dict((p, host.file(base + p).content_string.strip()) for p in ('avic', 'nested', 'npt', 'force_avic'))


def test_kvm_amd_runs_with_forced_avic_after_the_reboots(host):
    assert params(host) == {'avic': 'Y', 'nested': '0', 'npt': 'Y', 'force_avic': 'Y'}
    taint = int(host.file('/proc/sys/kernel/tainted').content_string.strip())
    assert taint & 64, 'force_avic taints the kernel (TAINT_USER)'


def test_the_host_role_reports_active_after_the_reboot(host):
    # the reload on its own is asserted in converge.yml, between the reload and the reboot
    status = json.loads(host.file('/var/tmp/lab-host-status.json').content_string)
    assert status['state'] == 'active', status
    assert status['reasons'] == [], status
    assert any('taint' in w for w in status['warnings'])


def test_owned_arguments_and_the_users_are_on_the_running_command_line(host):
    cmdline = host.file('/proc/cmdline').content_string.split()
    assert 'iommu=pt' in cmdline and 'amd_iommu=on' not in cmdline
    assert 'console=ttyS0,115200' in cmdline and 'quiet' in cmdline
    grub = host.file('/etc/default/grub').content_string
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"' in grub


def test_the_backports_kernel_runs_and_is_held(host):
    report = json.loads(host.file('/var/tmp/lab-kernel-report.json').content_string)
    running = host.check_output('uname -r')
    assert running == report['target']
    assert running != host.file('/var/tmp/lab-kernel-before').content_string.strip()
    version = host.check_output("dpkg-query -W -f '${Version}' linux-image-%s" % running)
    assert '~bpo' in version, 'installed from bookworm-backports: %s' % version
    assert host.check_output('apt-mark showhold').split() == ['linux-image-%s' % running]
    assert report['pinned'] is True and report['reboot_pending'] is False


def test_the_previous_kernel_is_still_installed_as_a_fallback(host):
    images = host.check_output('ls /boot').split()
    assert len([i for i in images if i.startswith('vmlinuz-')]) >= 2


def test_modprobe_file_is_the_managed_one(host):
    text = host.file('/etc/modprobe.d/vfio-avic-kvm_amd.conf').content_string
    assert text.splitlines()[-1] == 'options kvm_amd avic=1 npt=1 nested=0 force_avic=1'
