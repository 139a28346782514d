# -*- coding: utf-8 -*-
"""Per-family kernel decisions, including the families the container lab cannot run."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
from ansible_collections.vfio.avic.plugins.module_utils.plan import default_entry as de
from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_pin
from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_select as kp


@pytest.mark.parametrize('family, os_id, proxmox, dist', [
    ('Debian', 'debian', False, 'debian'), ('Debian', 'ubuntu', False, 'ubuntu'),
    ('Debian', 'debian', True, 'proxmox'), ('RedHat', 'fedora', False, 'RedHat'),
    ('Archlinux', 'arch', False, 'Archlinux'), ('Suse', 'opensuse-tumbleweed', False, 'Suse')])
def test_distro(family, os_id, proxmox, dist):
    assert kp.distro(family, os_id, proxmox) == dist


def test_unknown_family_and_mode_and_version_are_named():
    with pytest.raises(kp.PlanError, match='Gentoo'):
        kp.distro('Gentoo')
    # module_utils names the field (the module option); a caller passes its own names
    with pytest.raises(kp.PlanError, match='^mode must be one of keep, latest, version') as exc:
        kp.packages('debian', 'newest')
    assert exc.value.field == 'mode'
    with pytest.raises(kp.PlanError, match='^avic_kernel_mode must be one of'):
        kp.packages('debian', 'newest', names=role_filters.KERNEL_ROLE_NAMES)
    for bad in ('banana', '6', '6.1 extra', '', None, '6.1.0-26-amd64;rm'):
        with pytest.raises(kp.PlanError, match='^version .* is not a kernel version') as exc:
            kp.check_version_string(bad)
        assert exc.value.field == 'version'
        with pytest.raises(kp.PlanError, match='^avic_kernel_version .* is not a kernel version'):
            kp.check_version_string(bad, role_filters.KERNEL_ROLE_NAMES)


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
    assert kernel_pin.pin('debian', ['linux-image-amd64'])['command'] == ['apt-mark', 'hold', 'linux-image-amd64']
    assert kernel_pin.pin('proxmox', ['x'], '6.8.12-4-pve')['command'] == [
        'proxmox-boot-tool', 'kernel', 'pin', '6.8.12-4-pve']
    assert kernel_pin.pin('RedHat', ['kernel-core-6.9'])['method'] == 'dnf-versionlock'
    arch = kernel_pin.pin('Archlinux', ['linux'])
    assert arch['file'] == '/etc/pacman.conf' and arch['ignore'] == ['linux', 'linux-headers']
    assert arch['command'] is None
    # Proxmox pins a release: none is known before latest has installed one
    assert kernel_pin.pin('proxmox', ['proxmox-default-kernel'])['command'] is None
    assert kernel_pin.pin('Suse', ['kernel-default'])['command'][-2:] == ['addlock', 'kernel-default']


def test_default_entry_per_boot_loader():
    deb = de.default_entry('debian', 'grub', '6.12.9+bpo-amd64')
    assert deb == {'kind': 'grub', 'entry': 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, '
                   'with Linux 6.12.9+bpo-amd64', 'needs_saved_default': True}
    assert de.default_entry('RedHat', 'grub', '6.9.1-200.fc40.x86_64') == {
        'kind': 'grubby', 'entry': '/boot/vmlinuz-6.9.1-200.fc40.x86_64', 'needs_saved_default': False}
    assert de.default_entry('proxmox', 'grub', '6.8.12-4-pve') is None
    assert de.default_entry('debian', 'systemd-boot', '6.1.0-26-amd64') is None
    assert de.default_entry('debian', 'grub', None) is None


def test_validate_refuses_below_the_minimum_and_warns_on_known_issues():
    old = kp.validate('4.19.0-27-amd64')
    assert not old['ok'] and 'set allow_old: true' in old['refusals'][0]
    assert 'set avic_kernel_allow_old: true' in \
        kp.validate('4.19.0-27-amd64', names=role_filters.KERNEL_ROLE_NAMES)['refusals'][0]
    assert kp.validate('4.19.0-27-amd64', allow_old=True)['ok']
    known = kp.validate('5.6.5')
    assert known['ok'] and known['warnings']
    assert not kp.validate('5.6.5', refuse_known_issues=True)['ok']
    assert kp.validate('6.12.9+bpo-amd64')['refusals'] == []
    with pytest.raises(kp.PlanError, match='^minimum or the wanted kernel') as exc:
        kp.validate('6.1.0', minimum='six')
    assert exc.value.field == 'minimum'
    with pytest.raises(kp.PlanError, match='^avic_kernel_min_version or the wanted kernel'):
        kp.validate('6.1.0', minimum='six', names=role_filters.KERNEL_ROLE_NAMES)


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


def test_keep_plan_is_the_module_decision_of_mode_keep():
    """One producer: the keep plan of the facts is plan() + selection(), as avic_kernel_select
    returns it, with the same keys as the module's RETURN documentation."""
    import yaml
    from ansible_collections.vfio.avic.plugins.modules import avic_kernel_select
    facts = {'kernel': '6.1.0-26-amd64', 'os': {'family': 'Debian', 'id': 'debian', 'proxmox': False},
             'kernel_packages': [{'package': 'linux-image-6.1.0-26-amd64', 'release': '6.1.0-26-amd64',
                                  'held': False}]}
    from_facts = kp.keep_plan(facts)
    decided = kp.plan('Debian', 'keep', '6.1.0-26-amd64', 'debian')
    from_module = kp.selection(decided, '6.1.0-26-amd64', facts['os'], installed=['6.1.0-26-amd64'],
                               held=[])
    assert from_facts == from_module
    documented = set(yaml.safe_load(avic_kernel_select.RETURN))
    assert set(from_facts) == documented
    with pytest.raises(kp.PlanError, match='set avic_kernel_allow_old: true'):
        kp.keep_plan(dict(facts, kernel='4.19.0-27-amd64'), names=role_filters.KERNEL_ROLE_NAMES)
