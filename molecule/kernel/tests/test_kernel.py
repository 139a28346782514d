"""Testinfra checks of the kernel role (run by verify.yml)."""

import json


def report(host):
    return json.loads(host.file('/var/tmp/lab-kernel-report.json').content_string)


def test_target_kernel_package_is_installed_with_its_image(host):
    target = report(host)['target']
    package = host.package('linux-image-%s' % target)
    assert package.is_installed
    assert host.file('/boot/vmlinuz-%s' % target).is_file
    assert host.file('/lib/modules/%s/kernel/arch/x86/kvm/kvm-amd.ko' % target).exists or \
        host.file('/lib/modules/%s/kernel/arch/x86/kvm/kvm-amd.ko.xz' % target).exists


def test_target_kernel_is_held(host):
    held = host.check_output('apt-mark showhold').split()
    assert held == ['linux-image-%s' % report(host)['target']]


def test_no_kernel_was_removed_and_the_running_one_is_left_alone(host):
    running = host.check_output('uname -r')
    assert report(host)['running'] == running
    assert host.file('/var/tmp/lab-packages-before.txt').exists
    before = set(host.file('/var/tmp/lab-packages-before.txt').content_string.split())
    now = set(host.check_output("dpkg-query -W -f '${Package}\\n'").split())
    assert before <= now, 'packages were removed: %s' % sorted(before - now)
