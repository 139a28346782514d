# -*- coding: utf-8 -*-
"""Per-family kernel decisions, including the families the container lab cannot run."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel as kp


@pytest.mark.parametrize('family, os_id, proxmox, dist', [
    ('Debian', 'debian', False, 'debian'), ('Debian', 'ubuntu', False, 'ubuntu'),
    ('Debian', 'debian', True, 'proxmox'), ('RedHat', 'fedora', False, 'RedHat'),
    ('Archlinux', 'arch', False, 'Archlinux'), ('Suse', 'opensuse-tumbleweed', False, 'Suse')])
def test_distro(family, os_id, proxmox, dist):
    assert kp.distro(family, os_id, proxmox) == dist


def test_unknown_family_and_mode_and_version_are_named():
    with pytest.raises(kp.PlanError, match='Gentoo'):
        kp.distro('Gentoo')
    with pytest.raises(kp.PlanError, match='avic_kernel_mode'):
        kp.packages('debian', 'newest')
    for bad in ('banana', '6', '6.1 extra', '', None, '6.1.0-26-amd64;rm'):
        with pytest.raises(kp.PlanError, match='avic_kernel_version'):
            kp.check_version_string(bad)


@pytest.mark.parametrize('dist, mode, version, running, flavour, want', [
    ('debian', 'latest', None, '6.1.0-26-amd64', None, ['linux-image-amd64']),
    ('debian', 'latest', None, '6.1.0-26-amd64', 'cloud-amd64', ['linux-image-cloud-amd64']),
    ('debian', 'version', '6.12.9+bpo-amd64', '6.1.0-26-amd64', None, ['linux-image-6.12.9+bpo-amd64']),
    ('debian', 'keep', None, '6.1.0-26-amd64', None, ['linux-image-6.1.0-26-amd64']),
    ('ubuntu', 'latest', None, '6.8.0-45-generic', None, ['linux-image-generic']),
    ('ubuntu', 'keep', None, '6.8.0-45-generic', None, ['linux-image-6.8.0-45-generic']),
    ('proxmox', 'latest', None, '6.8.12-4-pve', None, ['proxmox-default-kernel']),
    ('proxmox', 'keep', None, '6.8.12-4-pve', None, ['proxmox-kernel-6.8.12-4-pve-signed']),
    ('proxmox', 'version', '6.11', '6.8.12-4-pve', None, ['proxmox-kernel-6.11']),
    ('RedHat', 'latest', None, '5.14.0-427.el9.x86_64', None, ['kernel']),
    ('RedHat', 'keep', None, '5.14.0-427.el9.x86_64', None, ['kernel-core-5.14.0-427.el9']),
    ('Archlinux', 'latest', None, '6.10.10-arch1-1', None, ['linux']),
    ('Archlinux', 'keep', None, '6.10.10-arch1-1', None, ['linux']),
    ('Suse', 'keep', None, '6.4.0-150600.23.7-default', None, ['kernel-default-6.4.0-150600.23.7-default']),
])
def test_packages_per_family(dist, mode, version, running, flavour, want):
    assert kp.packages(dist, mode, version, running, flavour) == want


def test_arch_cannot_install_a_given_version():
    with pytest.raises(kp.PlanError, match='IgnorePkg'):
        kp.packages('Archlinux', 'version', '6.9.1-arch1-1')


def test_pin_methods_per_family():
    assert kp.pin('debian', ['linux-image-amd64'])['command'] == ['apt-mark', 'hold', 'linux-image-amd64']
    assert kp.pin('proxmox', ['x'], '6.8.12-4-pve')['command'] == ['proxmox-boot-tool', 'kernel', 'pin',
                                                                   '6.8.12-4-pve']
    assert kp.pin('RedHat', ['kernel-core-6.9'])['method'] == 'dnf-versionlock'
    arch = kp.pin('Archlinux', ['linux'])
    assert arch['file'] == '/etc/pacman.conf' and arch['ignore'] == ['linux', 'linux-headers']
    assert arch['command'] is None
    # Proxmox pins a release: none is known before latest has installed one
    assert kp.pin('proxmox', ['proxmox-default-kernel'])['command'] is None
    assert kp.pin('Suse', ['kernel-default'])['command'][-2:] == ['addlock', 'kernel-default']


def test_default_entry_per_boot_loader():
    deb = kp.default_entry('debian', 'grub', '6.12.9+bpo-amd64')
    assert deb == {'kind': 'grub', 'entry': 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, '
                   'with Linux 6.12.9+bpo-amd64', 'needs_saved_default': True}
    assert kp.default_entry('RedHat', 'grub', '6.9.1-200.fc40.x86_64') == {
        'kind': 'grubby', 'entry': '/boot/vmlinuz-6.9.1-200.fc40.x86_64', 'needs_saved_default': False}
    assert kp.default_entry('proxmox', 'grub', '6.8.12-4-pve') is None
    assert kp.default_entry('debian', 'systemd-boot', '6.1.0-26-amd64') is None
    assert kp.default_entry('debian', 'grub', None) is None


def test_validate_refuses_below_the_minimum_and_warns_on_known_issues():
    old = kp.validate('4.19.0-27-amd64')
    assert not old['ok'] and 'avic_kernel_allow_old' in old['refusals'][0]
    assert kp.validate('4.19.0-27-amd64', allow_old=True)['ok']
    known = kp.validate('5.6.5')
    assert known['ok'] and known['warnings']
    assert not kp.validate('5.6.5', refuse_known_issues=True)['ok']
    assert kp.validate('6.12.9+bpo-amd64')['refusals'] == []
    with pytest.raises(kp.PlanError, match='avic_kernel_min_version'):
        kp.validate('6.1.0', minimum='six')


def test_newest_orders_distribution_releases():
    assert kp.newest(['6.1.0-9-amd64', '6.1.0-26-amd64', '6.1.0-3-amd64', 'junk']) == '6.1.0-26-amd64'
    assert kp.newest(['6.1.0-26-amd64', '6.12.9+bpo-amd64']) == '6.12.9+bpo-amd64'
    assert kp.newest([]) is None


def test_plan_for_a_version_the_repositories_do_not_have():
    result = kp.plan('Debian', 'version', '6.1.0-26-amd64', 'debian', version='6.1.0-999-amd64',
                     available=['6.1.0-26-amd64', '6.1.0-27-amd64'])
    assert not result['validation']['ok']
    assert 'not available' in result['validation']['refusals'][0]
    ok = kp.plan('Debian', 'version', '6.1.0-26-amd64', 'debian', version='6.1.0-27-amd64',
                 available=['6.1.0-26-amd64', '6.1.0-27-amd64'], boot_loader='grub')
    assert ok['validation']['ok'] and ok['packages'] == ['linux-image-6.1.0-27-amd64']
    assert ok['default_entry']['kind'] == 'grub' and ok['action'] == 'install'
    assert ok['default_entry']['entry'].endswith('with Linux 6.1.0-27-amd64')
    keep = kp.plan('Debian', 'keep', '6.1.0-26-amd64', 'debian')
    assert keep['action'] == 'pin' and keep['target'] == '6.1.0-26-amd64' and keep['default_entry'] is None


def test_keep_plan_from_facts():
    facts = {'kernel': '6.1.0-26-amd64', 'os': {'family': 'Debian', 'id': 'debian', 'proxmox': False},
             'kernel_packages': [{'package': 'linux-image-6.1.0-26-amd64', 'release': '6.1.0-26-amd64',
                                  'held': True}, {'package': 'linux-image-amd64', 'release': None, 'held': False}]}
    result = kp.keep_plan(facts)
    assert result['target'] == result['running'] == '6.1.0-26-amd64'
    assert result['packages'] == ['linux-image-6.1.0-26-amd64'] and result['held'] == ['linux-image-6.1.0-26-amd64']
    assert result['installed'] == ['6.1.0-26-amd64'] and result['pin']['method'] == 'apt-hold'
    with pytest.raises(kp.PlanError, match='below the minimum'):
        kp.keep_plan(dict(facts, kernel='4.19.0-27-amd64'))
    assert kp.keep_plan(dict(facts, kernel='4.19.0-27-amd64'), allow_old=True)['target'] == '4.19.0-27-amd64'
