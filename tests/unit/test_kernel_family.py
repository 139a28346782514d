# -*- coding: utf-8 -*-
"""Per-family kernel decisions the lab cannot run: Fedora/RHEL, Arch, openSUSE, Proxmox, Ubuntu.

The commands come from roles/kernel/vars/main.yml (per family), the decisions from plan/kernel_select.py and plan/kernel_pin.py; the
texts below are what the tools print on those systems (rpm, pacman, dpkg-query, apt-cache) and
the configuration files they ship (pacman.conf, /etc/default/grub, os-release).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
from ansible_collections.vfio.avic.plugins.module_utils.parse import os_release as os_release_file
from ansible_collections.vfio.avic.plugins.module_utils.parse import packages as pk
from ansible_collections.vfio.avic.plugins.module_utils.plan import default_entry as de
from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_pin
from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_select as kp

from conftest import REPO, role_vars

COMMANDS = ('__avic_kernel_grub_mkconfig', '__avic_kernel_grub_set_default',
            '__avic_kernel_grub_editenv', '__avic_kernel_grubby')


def family_vars(family):
    """The kernel role's boot commands on a host of OS family ``family``, as Ansible templates them."""
    return role_vars('kernel', family, COMMANDS)


def set_default_argv(family, entry):
    """The argv default_entry.yml runs: the family's tool from vars, the entry from the plan."""
    cmds = family_vars(family)
    tool = cmds['__avic_kernel_grub_set_default'] if entry['needs_saved_default'] else \
        cmds['__avic_kernel_grubby'] + ['--set-default']
    return tool + [entry['entry']]


# --- boot commands per family (vars files) ----------------------------------------------------

@pytest.mark.parametrize('family, mkconfig, set_default, editenv', [
    ('Debian', ['update-grub'], ['grub-set-default'], ['grub-editenv']),
    ('RedHat', ['grub2-mkconfig', '-o', '/boot/grub2/grub.cfg'], ['grub2-set-default'], ['grub2-editenv']),
    ('Archlinux', ['grub-mkconfig', '-o', '/boot/grub/grub.cfg'], ['grub-set-default'], ['grub-editenv']),
    ('Suse', ['grub2-mkconfig', '-o', '/boot/grub2/grub.cfg'], ['grub2-set-default'], ['grub2-editenv']),
])
def test_grub_commands_per_family(family, mkconfig, set_default, editenv):
    cmds = family_vars(family)
    assert cmds['__avic_kernel_grub_mkconfig'] == mkconfig
    assert cmds['__avic_kernel_grub_set_default'] == set_default
    assert cmds['__avic_kernel_grub_editenv'] == editenv


def test_a_family_not_listed_gets_the_upstream_grub_commands():
    upstream = {'__avic_kernel_grub_mkconfig': ['grub-mkconfig', '-o', '/boot/grub/grub.cfg'],
                '__avic_kernel_grub_set_default': ['grub-set-default'],
                '__avic_kernel_grub_editenv': ['grub-editenv'], '__avic_kernel_grubby': ['grubby']}
    for family in ('Gentoo', '', None):
        assert family_vars(family) == upstream, family
    for family in ('Debian', 'RedHat', 'Archlinux', 'Suse'):
        assert all(isinstance(v, list) and v for v in family_vars(family).values()), family
    # role-internal: inventory cannot override them by accident
    with open(os.path.join(REPO, 'roles', 'kernel', 'vars', 'main.yml')) as handle:
        assert all(name.startswith('__avic_kernel_') for name in yaml.safe_load(handle))


def test_installed_kernel_queries_per_family():
    queries = pk.INSTALLED_QUERIES
    assert queries['RedHat'] == ['rpm', '-q', '--qf', '[%{FILENAMES}\\n]', 'kernel-core', 'kernel']
    assert queries['Suse'][-1] == 'kernel-default'
    assert queries['Archlinux'] == ['pacman', '-Qlq', 'linux']
    debian = queries['debian']
    assert debian[:4] == ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Abbrev}\\n']
    assert 'proxmox-kernel-*' in debian and 'linux-image-*' in debian
    assert queries['ubuntu'] == queries['proxmox'] == debian


# --- menu titles ----------------------------------------------------------------------------

DEBIAN_DEFAULT_GRUB = '''GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
'''
ARCH_DEFAULT_GRUB = '''# GRUB boot loader configuration

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="Arch"
GRUB_CMDLINE_LINUX_DEFAULT="loglevel=3 quiet"
GRUB_CMDLINE_LINUX=""
'''
SUSE_DEFAULT_GRUB = '''# If you change this file, run 'grub2-mkconfig -o /boot/grub2/grub.cfg' afterwards to update
# /boot/grub2/grub.cfg.
GRUB_DISTRIBUTOR=
GRUB_DEFAULT=saved
GRUB_HIDDEN_TIMEOUT=0
GRUB_TIMEOUT=8
GRUB_CMDLINE_LINUX_DEFAULT="splash=silent quiet security=apparmor mitigations=auto"
GRUB_CMDLINE_LINUX=""
'''
LEAP_OS_RELEASE = '''NAME="openSUSE Leap"
VERSION="15.6"
ID="opensuse-leap"
ID_LIKE="suse opensuse"
VERSION_ID="15.6"
PRETTY_NAME="openSUSE Leap 15.6"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:opensuse:leap:15.6"
'''
TUMBLEWEED_OS_RELEASE = '''NAME="openSUSE Tumbleweed"
# VERSION="20241120"
ID="opensuse-tumbleweed"
ID_LIKE="opensuse suse"
VERSION_ID="20241120"
PRETTY_NAME="openSUSE Tumbleweed"
'''


def test_grub_distributor_is_read_only_when_literal():
    assert de.grub_distributor(DEBIAN_DEFAULT_GRUB) is None      # computed by the shell
    assert de.grub_distributor(ARCH_DEFAULT_GRUB) == 'Arch'
    assert de.grub_distributor(SUSE_DEFAULT_GRUB) is None        # empty: os-release decides
    assert de.grub_distributor("GRUB_DISTRIBUTOR='My Box'\n") == 'My Box'
    assert de.grub_distributor(None) is None


@pytest.mark.parametrize('dist, os_release, default_grub, name', [
    ('debian', '', DEBIAN_DEFAULT_GRUB, 'Debian GNU/Linux'),
    ('ubuntu', '', 'GRUB_DISTRIBUTOR=`( . /etc/os-release; echo ${NAME:-Ubuntu} ) 2>/dev/null || echo Ubuntu`\n',
     'Ubuntu'),
    ('Archlinux', '', ARCH_DEFAULT_GRUB, 'Arch Linux'),
    ('Suse', LEAP_OS_RELEASE, SUSE_DEFAULT_GRUB, 'openSUSE Leap 15.6'),
    ('Suse', TUMBLEWEED_OS_RELEASE, SUSE_DEFAULT_GRUB, 'openSUSE Tumbleweed'),
    ('Suse', LEAP_OS_RELEASE, 'GRUB_DISTRIBUTOR="SLES 15-SP6"\n', 'SLES 15-SP6'),
])
def test_grub_os_name_per_distribution(dist, os_release, default_grub, name):
    assert de.grub_os_name(dist, os_release_file.parse(os_release), de.grub_distributor(default_grub)) == name


@pytest.mark.parametrize('family, dist, release, os_name, image, argv', [
    ('Debian', 'debian', '6.12.12+bpo-amd64', 'Debian GNU/Linux', None,
     ['grub-set-default', 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.12.12+bpo-amd64']),
    ('Debian', 'ubuntu', '6.8.0-45-generic', 'Ubuntu', None,
     ['grub-set-default', 'Advanced options for Ubuntu>Ubuntu, with Linux 6.8.0-45-generic']),
    # 10_linux names the entry after the image file, /boot/vmlinuz-linux: "with Linux linux"
    ('Archlinux', 'Archlinux', '6.10.10-arch1-1', 'Arch Linux', 'linux',
     ['grub-set-default', 'Advanced options for Arch Linux>Arch Linux, with Linux linux']),
    ('Suse', 'Suse', '6.4.0-150600.23.7-default', 'openSUSE Leap 15.6', 'kernel-default',
     ['grub2-set-default', 'Advanced options for openSUSE Leap 15.6>openSUSE Leap 15.6, with Linux '
      '6.4.0-150600.23.7-default']),
    ('Suse', 'Suse', '6.11.8-1-default', 'openSUSE Tumbleweed', 'kernel-default',
     ['grub2-set-default', 'Advanced options for openSUSE Tumbleweed>openSUSE Tumbleweed, with Linux '
      '6.11.8-1-default']),
    ('RedHat', 'RedHat', '6.11.7-300.fc41.x86_64', None, 'kernel',
     ['grubby', '--set-default', '/boot/vmlinuz-6.11.7-300.fc41.x86_64']),
])
def test_default_entry_command_per_family(family, dist, release, os_name, image, argv):
    entry = de.default_entry(dist, 'grub', release, os_name, image)
    assert set_default_argv(family, entry) == argv


# --- Debian and Ubuntu: exact flavour, installable candidates ----------------------------------

BOOKWORM_PKGNAMES = '''linux-image-6.1.0-26-amd64
linux-image-6.1.0-26-cloud-amd64
linux-image-6.1.0-26-rt-amd64
linux-image-6.1.0-26-amd64-dbg
linux-image-6.1.0-26-amd64-unsigned
linux-image-6.1.0-27-amd64
linux-image-6.1.0-27-cloud-amd64
linux-image-6.1.0-18-amd64
linux-image-6.12.12+bpo-amd64
linux-image-6.12.12+bpo-rt-amd64
linux-image-6.12.12+bpo-cloud-amd64
linux-image-6.12.12+bpo-amd64-dbg
linux-image-6.12.117+deb12-amd64
linux-image-6.12-amd64
linux-image-amd64
linux-image-cloud-amd64
linux-image-rt-amd64
linux-image-amd64-signed-template
'''
# 6.1.0-18-amd64 is only a name here (an old ABI another package still mentions): no candidate
BOOKWORM_POLICY = '''linux-image-6.1.0-18-amd64:
  Installed: (none)
  Candidate: (none)
  Version table:
linux-image-6.1.0-26-amd64:
  Installed: 6.1.112-1
  Candidate: 6.1.112-1
  Version table:
 *** 6.1.112-1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
        100 /var/lib/dpkg/status
linux-image-6.1.0-27-amd64:
  Installed: (none)
  Candidate: 6.1.115-1
  Version table:
     6.1.115-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
linux-image-6.12.12+bpo-amd64:
  Installed: (none)
  Candidate: 6.12.12-1~bpo12+1
  Version table:
     6.12.12-1~bpo12+1 100
        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages
'''
NOBLE_PKGNAMES = '''linux-image-6.8.0-45-generic
linux-image-6.8.0-45-lowlatency
linux-image-6.8.0-49-generic
linux-image-6.8.0-49-generic-64k
linux-image-6.8.0-1015-aws
linux-image-unsigned-6.8.0-49-generic
linux-image-generic
linux-image-generic-hwe-24.04
'''


def test_flavour_matches_exactly():
    lines = BOOKWORM_PKGNAMES.splitlines()
    # linux-image-6.12-amd64 is the 6.12 series meta package, not a kernel release
    assert pk.flavour_releases(lines, 'amd64') == [
        '6.1.0-18-amd64', '6.1.0-26-amd64', '6.1.0-27-amd64', '6.12.117+deb12-amd64', '6.12.12+bpo-amd64']
    assert pk.flavour_releases(lines, 'cloud-amd64') == [
        '6.1.0-26-cloud-amd64', '6.1.0-27-cloud-amd64', '6.12.12+bpo-cloud-amd64']
    assert pk.flavour_releases(lines, 'rt-amd64') == ['6.1.0-26-rt-amd64', '6.12.12+bpo-rt-amd64']
    assert pk.flavour_releases(NOBLE_PKGNAMES.splitlines(), 'generic') == ['6.8.0-45-generic', '6.8.0-49-generic']
    assert pk.flavour_releases(NOBLE_PKGNAMES.splitlines(), 'aws') == ['6.8.0-1015-aws']


@pytest.mark.parametrize('release, flavour', [
    ('6.1.0-26-amd64', 'amd64'), ('6.1.0-26-cloud-amd64', 'cloud-amd64'),
    ('6.12.12+bpo-rt-amd64', 'rt-amd64'), ('6.12.38+deb13-amd64', 'amd64'),
    ('5.10.0-0.bpo.15-amd64', 'amd64'), ('5.10.0-0.deb10.16-cloud-amd64', 'cloud-amd64'),
    ('6.8.0-45-generic', 'generic'), ('6.8.0-49-generic-64k', 'generic-64k'), ('6.1.0', None),
    ('6.12-amd64', None)])
def test_release_flavour(release, flavour):
    assert pk.release_flavour(release) == flavour


def test_only_installable_candidates_are_planned():
    candidates = pk.apt_candidates(BOOKWORM_POLICY)
    assert candidates['linux-image-6.1.0-18-amd64'] is None
    assert candidates['linux-image-6.12.12+bpo-amd64'] == '6.12.12-1~bpo12+1'
    releases = pk.flavour_releases(BOOKWORM_PKGNAMES.splitlines(), 'amd64')
    available = pk.installable(releases, BOOKWORM_POLICY)
    # no policy entry for 6.12.117+deb12-amd64 in this output: not planned either
    assert available == ['6.1.0-26-amd64', '6.1.0-27-amd64', '6.12.12+bpo-amd64']
    result = kp.plan('Debian', 'latest', '6.1.0-26-amd64', 'debian', available=available, flavour='amd64',
                     boot_loader='grub', os_name='Debian GNU/Linux')
    assert result['target'] == '6.12.12+bpo-amd64'    # not 6.12.12+bpo-rt-amd64
    refused = kp.plan('Debian', 'version', '6.1.0-26-amd64', 'debian', version='6.1.0-18-amd64',
                      available=available)
    assert not refused['validation']['ok'] and 'not available' in refused['validation']['refusals'][0]


# --- mode latest elsewhere: the kernel the package manager installed ------------------------

FEDORA_RPM_FILES = '''/boot/.vmlinuz-6.11.7-300.fc41.x86_64.hmac
/boot/System.map-6.11.7-300.fc41.x86_64
/boot/config-6.11.7-300.fc41.x86_64
/boot/initramfs-6.11.7-300.fc41.x86_64.img
/boot/symvers-6.11.7-300.fc41.x86_64.xz
/boot/vmlinuz-6.11.7-300.fc41.x86_64
/lib/modules/6.11.7-300.fc41.x86_64
/lib/modules/6.11.7-300.fc41.x86_64/vmlinuz
/lib/modules/6.11.7-300.fc41.x86_64/System.map
/boot/vmlinuz-6.11.10-300.fc41.x86_64
/lib/modules/6.11.10-300.fc41.x86_64/vmlinuz
/lib/modules/6.11.10-300.fc41.x86_64/config
package kernel is not installed
'''
EL7_RPM_FILES = '''package kernel-core is not installed
/boot/System.map-3.10.0-1160.119.1.el7.x86_64
/boot/vmlinuz-3.10.0-1160.119.1.el7.x86_64
/lib/modules/3.10.0-1160.119.1.el7.x86_64/kernel/arch/x86/kvm/kvm-amd.ko.xz
/boot/vmlinuz-3.10.0-1160.el7.x86_64
'''
LEAP_RPM_FILES = '''/boot/.vmlinuz-6.4.0-150600.23.7-default.hmac
/boot/System.map-6.4.0-150600.23.7-default
/boot/vmlinuz
/boot/vmlinuz-6.4.0-150600.23.7-default
/lib/modules/6.4.0-150600.23.7-default/kernel/arch/x86/kvm/kvm-amd.ko.zst
/boot/vmlinuz-6.4.0-150600.23.25-default
'''
TUMBLEWEED_RPM_FILES = '''/usr/lib/modules/6.11.8-1-default/vmlinuz
/usr/lib/modules/6.11.8-1-default/System.map
/usr/lib/modules/6.12.1-1-default/vmlinuz
'''
PACMAN_LINUX_FILES = '''/usr/
/usr/lib/
/usr/lib/modules/
/usr/lib/modules/6.12.1-arch1-1/
/usr/lib/modules/6.12.1-arch1-1/pkgbase
/usr/lib/modules/6.12.1-arch1-1/vmlinuz
/usr/share/licenses/linux/
'''
PVE_DPKG = '''proxmox-kernel-6.8 ii
proxmox-kernel-6.8.12-2-pve-signed ii
proxmox-kernel-6.8.12-4-pve-signed ii
proxmox-kernel-6.5.13-6-pve-signed rc
proxmox-kernel-helper ii
pve-kernel-6.2.16-20-pve ii
linux-image-6.1.0-26-amd64 un
'''
DEBIAN_DPKG = '''linux-image-6.1.0-26-amd64 ii
linux-image-6.1.0-27-amd64 ii
linux-image-6.1.0-27-cloud-amd64 ii
linux-image-6.1.0-25-amd64 rc
linux-image-amd64 ii
'''


@pytest.mark.parametrize('dist, listing, flavour, want', [
    ('RedHat', FEDORA_RPM_FILES, None, ['6.11.10-300.fc41.x86_64', '6.11.7-300.fc41.x86_64']),
    ('RedHat', EL7_RPM_FILES, None, ['3.10.0-1160.119.1.el7.x86_64', '3.10.0-1160.el7.x86_64']),
    ('Suse', LEAP_RPM_FILES, None, ['6.4.0-150600.23.25-default', '6.4.0-150600.23.7-default']),
    ('Suse', TUMBLEWEED_RPM_FILES, None, ['6.11.8-1-default', '6.12.1-1-default']),
    ('Archlinux', PACMAN_LINUX_FILES, None, ['6.12.1-arch1-1']),
    ('proxmox', PVE_DPKG, None, ['6.2.16-20-pve', '6.8.12-2-pve', '6.8.12-4-pve']),
    ('debian', DEBIAN_DPKG, 'amd64', ['6.1.0-26-amd64', '6.1.0-27-amd64']),
])
def test_installed_releases(dist, listing, flavour, want):
    assert pk.installed_releases(dist, listing, flavour) == want


def selected(family, os_id=None, proxmox=False, boot_loader='grub', os_name=None, flavour=None):
    """What avic_kernel_select returns for mode latest, before installing."""
    result = kp.plan(family, 'latest', '6.1.0-26-amd64' if family == 'Debian' else '6.10.0', os_id, proxmox,
                     flavour=flavour, boot_loader=boot_loader, os_name=os_name,
                     arch_kernels=['linux', 'linux-lts'] if family == 'Archlinux' else None)
    plan = dict(result, running='6.10.0', flavour=flavour, boot_loader=boot_loader, grub_os=os_name,
                warnings_rules=result['validation']['warnings'])
    assert plan['target'] is None and plan['default_entry'] is None
    return plan


def test_latest_on_fedora_targets_what_dnf_installed():
    plan = kp.resolve(selected('RedHat', 'fedora'), FEDORA_RPM_FILES)
    assert plan['target'] == '6.11.10-300.fc41.x86_64'
    assert set_default_argv('RedHat', plan['default_entry']) == [
        'grubby', '--set-default', '/boot/vmlinuz-6.11.10-300.fc41.x86_64']
    assert plan['pin']['method'] == 'dnf-versionlock' and plan['packages'] == ['kernel']


def test_latest_on_arch_targets_what_pacman_installed():
    plan = kp.resolve(selected('Archlinux', 'arch', os_name='Arch Linux'), PACMAN_LINUX_FILES)
    assert plan['target'] == '6.12.1-arch1-1'
    assert set_default_argv('Archlinux', plan['default_entry']) == [
        'grub-set-default', 'Advanced options for Arch Linux>Arch Linux, with Linux linux']
    assert plan['pin']['ignore'] == ['linux', 'linux-headers']


def test_latest_on_opensuse_targets_what_zypper_installed():
    plan = kp.resolve(selected('Suse', 'opensuse-leap', os_name='openSUSE Leap 15.6'), LEAP_RPM_FILES)
    assert plan['target'] == '6.4.0-150600.23.25-default'
    assert set_default_argv('Suse', plan['default_entry'])[-1] == (
        'Advanced options for openSUSE Leap 15.6>openSUSE Leap 15.6, with Linux 6.4.0-150600.23.25-default')
    assert plan['pin']['command'] == ['zypper', '--non-interactive', 'addlock', 'kernel-default']


def test_latest_on_proxmox_resolves_the_pin_release():
    before = selected('Debian', 'debian', proxmox=True)
    assert before['pin']['command'] is None            # the pin task stops on this with a message
    plan = kp.resolve(before, PVE_DPKG)
    assert plan['target'] == '6.8.12-4-pve'
    assert plan['pin']['command'] == ['proxmox-boot-tool', 'kernel', 'pin', '6.8.12-4-pve']
    assert plan['default_entry'] is None               # the pin selects the boot entry


def test_latest_on_debian_without_a_versioned_candidate_reads_the_flavour_back():
    plan = kp.resolve(selected('Debian', 'debian', flavour='amd64', os_name='Debian GNU/Linux'), DEBIAN_DPKG)
    assert plan['target'] == '6.1.0-27-amd64'          # not the cloud kernel


def test_resolve_is_the_same_on_a_second_run():
    first = kp.resolve(selected('RedHat', 'fedora'), FEDORA_RPM_FILES)
    second = kp.resolve(selected('RedHat', 'fedora'), FEDORA_RPM_FILES)
    assert first == second


def test_resolve_fails_clearly():
    with pytest.raises(kp.PlanError, match='no installed kernel of kernel'):
        kp.resolve(selected('RedHat', 'fedora'), 'package kernel-core is not installed\n')
    with pytest.raises(kp.PlanError, match='set allow_old: true'):
        kp.resolve(selected('RedHat', 'centos'), EL7_RPM_FILES)
    with pytest.raises(kp.PlanError, match='set avic_kernel_allow_old: true'):
        kp.resolve(selected('RedHat', 'centos'), EL7_RPM_FILES, names=role_filters.KERNEL_ROLE_NAMES)
    assert kp.resolve(selected('RedHat', 'centos'), EL7_RPM_FILES, allow_old=True)['target'] == \
        '3.10.0-1160.119.1.el7.x86_64'


RESOLVE_PARAMS = {'minimum': '5.6', 'allow_old': False, 'refuse_known_issues': False}


def test_the_module_resolves_after_installing():
    """avic_kernel_select resolve=<plan>: the installed-kernel query of parse/packages, read-only,
    then kernel_select.resolve(); what replaced the avic_kernel_resolve filter."""
    from ansible_collections.vfio.avic.plugins.modules import avic_kernel_select as select
    tool = RecordedTool(0, FEDORA_RPM_FILES)
    plan = select.resolve(tool, dict(RESOLVE_PARAMS, resolve=dict(selected('RedHat', 'fedora'), changed=False,
                                                                  invocation={})))
    assert tool.calls == [(['rpm', '-q', '--qf', '[%{FILENAMES}\\n]', 'kernel-core', 'kernel'], {'LC_ALL': 'C'})]
    assert plan['target'] == kp.resolve(selected('RedHat', 'fedora'), FEDORA_RPM_FILES)['target']
    assert plan['reboot_required'] is True and plan['changed'] is False and 'invocation' not in plan
    with pytest.raises(RuntimeError, match='set allow_old: true'):
        select.resolve(RecordedTool(0, EL7_RPM_FILES), dict(RESOLVE_PARAMS, resolve=selected('RedHat', 'centos')))
    with pytest.raises(RuntimeError, match='resolve must be the result of an earlier avic_kernel_select run'):
        select.resolve(RecordedTool(0, ''), dict(RESOLVE_PARAMS, resolve={'no': 'plan'}))
    with pytest.raises(RuntimeError, match='rpm -q .* failed \\(rc 2\\)'):
        select.resolve(RecordedTool(2, '', 'rpm: broken database'), dict(RESOLVE_PARAMS, resolve=selected('RedHat')))


def test_arch_latest_needs_a_fallback_kernel_package():
    alone = kp.plan('Archlinux', 'latest', '6.10.10-arch1-1', 'arch', arch_kernels=['linux'])
    assert not alone['validation']['ok'] and 'linux-lts' in alone['validation']['refusals'][0]
    with_lts = kp.plan('Archlinux', 'latest', '6.10.10-arch1-1', 'arch', arch_kernels=['linux', 'linux-lts'])
    assert with_lts['validation']['ok']
    assert kp.arch_fallbacks(['linux', 'linux-zen', 'linux'], 'linux') == ['linux-zen']
    # keep changes no package, so it needs no fallback
    assert kp.plan('Archlinux', 'keep', '6.10.10-arch1-1', 'arch', arch_kernels=['linux'])['validation']['ok']


# --- before installing: the kernel the repositories offer, checked against the rules ----------
#
# The outputs below are written from the tools' documented formats (dnf repoquery --queryformat
# with the tags of DNF_QUERYFORMAT, pacman -Si as printed with LC_ALL=C, zypper's --xmlout
# search-result), with package versions these distributions have shipped.

# dnf -q repoquery --available --qf '...' --latest-limit 1 kernel, Fedora 41 with a source
# repository enabled (dnf 4 without -q also prints its metadata line)
DNF_FEDORA_LATEST = '''Last metadata expiration check: 0:41:07 ago on Tue 03 Dec 2024 10:12:31 AM CET.
kernel 0 6.11.10 300.fc41 src
kernel 0 6.11.10 300.fc41 x86_64
'''
# dnf -q repoquery --available --qf '...' kernel, Rocky Linux 9 (BaseOS keeps every kernel)
DNF_EL9_ALL = '''kernel 0 5.14.0 427.13.1.el9_4 x86_64
kernel 0 5.14.0 503.14.1.el9_5 x86_64
kernel 0 5.14.0 427.42.1.el9_4 x86_64
'''
DNF_EL8_LATEST = 'kernel 0 4.18.0 553.27.1.el8_10 x86_64\n'
# Fedora 32 with only the release repository: its GA kernel
DNF_FEDORA32_GA = 'kernel 0 5.6.6 300.fc32 x86_64\n'

# pacman -Si linux with [core-testing] above [core] in pacman.conf, as Arch's template orders them
PACMAN_SI_TESTING_FIRST = """Repository      : core-testing
Name            : linux
Version         : 6.12.2.arch1-1
Description     : The Linux kernel and modules
Architecture    : x86_64
URL             : https://github.com/archlinux/linux
Licenses        : GPL-2.0-only
Groups          : None
Provides        : KSMBD-MODULE  VIRTUALBOX-GUEST-MODULES  WIREGUARD-MODULE
Depends On      : coreutils  kmod  initramfs
Optional Deps   : wireless-regdb: to set the correct wireless regulatory domain
                  linux-firmware: firmware images needed for some devices
                  scx-scheds: to use sched-ext schedulers
Conflicts With  : None
Replaces        : virtualbox-guest-modules-arch  wireguard-arch
Download Size   : 137.91 MiB
Installed Size  : 139.70 MiB
Packager        : Jan Alexander Steffens (heftig) <heftig@archlinux.org>
Build Date      : Thu 28 Nov 2024 08:43:16 PM UTC
Validated By    : MD5 Sum  SHA-256 Sum  Signature

Repository      : core
Name            : linux
Version         : 6.12.1.arch1-1
Description     : The Linux kernel and modules
Architecture    : x86_64
URL             : https://github.com/archlinux/linux
Licenses        : GPL-2.0-only
Groups          : None
Provides        : KSMBD-MODULE  VIRTUALBOX-GUEST-MODULES  WIREGUARD-MODULE
Depends On      : coreutils  kmod  initramfs
Optional Deps   : wireless-regdb: to set the correct wireless regulatory domain
Conflicts With  : None
Replaces        : virtualbox-guest-modules-arch  wireguard-arch
Download Size   : 137.88 MiB
Installed Size  : 139.62 MiB
Packager        : Jan Alexander Steffens (heftig) <heftig@archlinux.org>
Build Date      : Fri 22 Nov 2024 05:30:05 PM UTC
Validated By    : MD5 Sum  SHA-256 Sum  Signature

"""
# a sync database last refreshed in April 2020, without core-testing
PACMAN_SI_2020 = PACMAN_SI_TESTING_FIRST.split('\n\n')[1].replace('6.12.1.arch1-1', '5.6.5.arch3-1') + '\n'

# zypper --non-interactive --xmlout search --details --match-exact --type package kernel-default,
# openSUSE Leap 15.6: the running kernel, a newer one in the update repository, the release one,
# the source package, and an old kernel no repository has any more
ZYPPER_LEAP = """<?xml version='1.0'?>
<stream>
<message type="info">Loading repository data...</message>
<message type="info">Reading installed packages...</message>
<search-result version="0.0">
<solvable-list>
<solvable status="installed" name="kernel-default" kind="package" edition="6.4.0-150600.23.7.3" arch="x86_64" repository="Main Update Repository"/>
<solvable status="other-version" name="kernel-default" kind="package" edition="6.4.0-150600.23.25.1" arch="x86_64" repository="Main Update Repository"/>
<solvable status="other-version" name="kernel-default" kind="package" edition="6.4.0-150600.21.2" arch="x86_64" repository="Main Repository"/>
<solvable status="not-installed" name="kernel-default" kind="srcpackage" edition="6.4.0-150600.23.25.1" arch="noarch" repository="Main Update Repository"/>
<solvable status="installed" name="kernel-default" kind="package" edition="6.4.0-150600.23.3.1" arch="x86_64" repository="(System Packages)"/>
</solvable-list>
</search-result>
</stream>
"""
ZYPPER_TUMBLEWEED = """<?xml version='1.0'?>
<stream>
<message type="info">Loading repository data...</message>
<message type="info">Reading installed packages...</message>
<search-result version="0.0">
<solvable-list>
<solvable status="not-installed" name="kernel-default" kind="package" edition="6.12.1-1.1" arch="x86_64" repository="openSUSE-Tumbleweed-Oss"/>
</solvable-list>
</search-result>
</stream>
"""
# openSUSE Leap 15.2, below the minimum
ZYPPER_LEAP152 = ZYPPER_TUMBLEWEED.replace('6.12.1-1.1', '5.3.18-lp152.19.2').replace(
    'openSUSE-Tumbleweed-Oss', 'Main Repository')
# nothing matched (zypper exits 104)
ZYPPER_NONE = """<?xml version='1.0'?>
<stream>
<message type="info">Loading repository data...</message>
<message type="info">Reading installed packages...</message>
<message type="info">No matching items found.</message>
</stream>
"""


def test_repository_queries_are_read_only():
    latest = pk.candidate_query('RedHat', 'latest', 'kernel')
    assert latest[:4] == ['dnf', '-q', 'repoquery', '--available']
    assert latest[-3:] == ['--latest-limit', '1', 'kernel'] and pk.DNF_QUERYFORMAT in latest
    assert '--latest-limit' not in pk.candidate_query('RedHat', 'version', 'kernel')
    # the sync database is the user's: -Si reads it, nothing syncs it
    assert pk.candidate_query('Archlinux', 'latest', 'linux') == ['pacman', '-Si', 'linux']
    assert pk.candidate_query('Suse', 'latest', 'kernel-default') == [
        'zypper', '--non-interactive', '--xmlout', 'search', '--details', '--match-exact', '--type',
        'package', 'kernel-default']
    assert pk.candidate_query('debian', 'latest', 'linux-image-amd64') is None
    for dist in ('RedHat', 'Archlinux', 'Suse'):
        argv = pk.candidate_query(dist, 'latest', 'x')
        assert not {'install', 'upgrade', '-S', '-Sy', '-Syu', 'refresh', '--refresh'} & set(argv)


def test_dnf_candidates():
    latest = pk.dnf_candidates(DNF_FEDORA_LATEST)
    assert latest == [{'release': '6.11.10-300.fc41.x86_64', 'install': 'kernel-6.11.10-300.fc41',
                       'version': '6.11.10-300.fc41', 'repository': None, 'upstream': '6.11.10'}]
    el9 = pk.dnf_candidates(DNF_EL9_ALL)
    assert [c['release'] for c in el9] == ['5.14.0-503.14.1.el9_5.x86_64', '5.14.0-427.42.1.el9_4.x86_64',
                                           '5.14.0-427.13.1.el9_4.x86_64']
    # RHEL's 5.14.0 is a base with backports, not the upstream patch level
    assert el9[0]['upstream'] is None and el9[0]['install'] == 'kernel-5.14.0-503.14.1.el9_5'
    assert pk.dnf_candidates('kernel 1 6.1.0 1.el9 x86_64\n')[0]['install'] == 'kernel-1:6.1.0-1.el9'
    # a dnf that left the \n of the query format unexpanded still gives one record per package
    assert len(pk.dnf_candidates(DNF_EL9_ALL.replace('\n', '\\n'))) == 3
    assert pk.dnf_candidates(DNF_EL9_ALL, arch='aarch64') == []
    assert pk.dnf_candidates('') == []


@pytest.mark.parametrize('package, version, release', [
    ('linux', '6.12.1.arch1-1', '6.12.1-arch1-1'), ('linux', '6.12.arch1-1', '6.12.0-arch1-1'),
    ('linux', '6.6.10.arch1-2', '6.6.10-arch1-2'), ('linux-lts', '6.6.63-1', '6.6.63-1-lts'),
    ('linux-zen', '6.12.1.zen1-1', '6.12.1-zen1-1-zen'),
    ('linux-hardened', '6.11.9.hardened1-1', '6.11.9-hardened1-1-hardened'),
    ('linux', 'banana', None)])
def test_arch_release(package, version, release):
    assert pk.arch_release(package, version) == release


def test_pacman_candidates_follow_the_repository_order():
    found = pk.pacman_candidates(PACMAN_SI_TESTING_FIRST)
    # pacman -S takes the first repository that has the package, not the newest
    assert [c['release'] for c in found] == ['6.12.2-arch1-1', '6.12.1-arch1-1']
    assert found[0]['install'] == 'linux' and found[0]['upstream'] == '6.12.2'
    assert pk.pacman_candidates(PACMAN_SI_TESTING_FIRST, 'linux-lts') == []
    assert pk.pacman_candidates("error: package 'linux' was not found\n") == []


@pytest.mark.parametrize('edition, release', [
    ('6.4.0-150600.23.25.1', '6.4.0-150600.23.25-default'), ('6.12.1-1.1', '6.12.1-1-default'),
    ('5.14.21-150500.55.83.1', '5.14.21-150500.55.83-default'), ('6.4.0-150600.21.2', '6.4.0-150600.21-default'),
    ('5.3.18-lp152.19.2', '5.3.18-lp152.19-default'), ('6.4.0', None)])
def test_suse_release(edition, release):
    assert pk.suse_release(edition) == release


def test_zypper_candidates():
    leap = pk.zypper_candidates(ZYPPER_LEAP)
    # no srcpackage, no "(System Packages)" kernel: newest first
    assert [c['release'] for c in leap] == ['6.4.0-150600.23.25-default', '6.4.0-150600.23.7-default',
                                            '6.4.0-150600.21-default']
    assert leap[0]['install'] == 'kernel-default=6.4.0-150600.23.25.1'
    assert leap[0]['repository'] == 'Main Update Repository' and leap[0]['upstream'] is None
    assert pk.zypper_candidates(ZYPPER_NONE) == [] and pk.zypper_candidates('') == []
    with pytest.raises(pk.PackageOutputError, match='zypper --xmlout search'):
        pk.zypper_candidates('<stream><search-result>')


def before(family, text, mode='latest', version=None, **rules):
    """avic_kernel_select's plan from a repository query, before anything is installed."""
    dist = kp.distro(family)
    return kp.plan(family, mode, '6.10.0', version=version,
                   boot_loader='grubby' if family == 'RedHat' else 'grub',
                   os_name={'Archlinux': 'Arch Linux', 'Suse': 'openSUSE Leap 15.6'}.get(family),
                   arch_kernels=['linux', 'linux-lts'] if family == 'Archlinux' else None,
                   candidates=pk.repo_candidates(dist, text, kp.META_PACKAGES[dist]), **rules)


def test_latest_on_fedora_is_the_exact_validated_package():
    plan = before('RedHat', DNF_FEDORA_LATEST)
    assert plan['target'] == '6.11.10-300.fc41.x86_64' and plan['validation']['ok']
    assert plan['install'] == {'names': ['kernel-6.11.10-300.fc41'], 'state': 'present'}
    assert set_default_argv('RedHat', plan['default_entry']) == [
        'grubby', '--set-default', '/boot/vmlinuz-6.11.10-300.fc41.x86_64']
    # after dnf ran, the read-back confirms it and changes nothing
    selected = dict(plan, flavour=None, boot_loader='grubby', grub_os=None)
    assert kp.resolve(selected, FEDORA_RPM_FILES) == selected


def test_latest_on_arch_is_what_pacman_will_install():
    plan = before('Archlinux', PACMAN_SI_TESTING_FIRST)
    assert plan['target'] == '6.12.2-arch1-1' and plan['validation']['ok']
    assert plan['install'] == {'names': ['linux'], 'state': 'latest'}
    assert set_default_argv('Archlinux', plan['default_entry']) == [
        'grub-set-default', 'Advanced options for Arch Linux>Arch Linux, with Linux linux']


def test_latest_on_opensuse_is_the_newest_edition():
    plan = before('Suse', ZYPPER_LEAP)
    assert plan['target'] == '6.4.0-150600.23.25-default'
    assert plan['install'] == {'names': ['kernel-default=6.4.0-150600.23.25.1'], 'state': 'present'}
    assert plan['default_entry']['entry'].endswith('with Linux 6.4.0-150600.23.25-default')
    assert before('Suse', ZYPPER_TUMBLEWEED)['target'] == '6.12.1-1-default'


def test_below_the_minimum_is_refused_before_installing():
    for family, text, release in (('RedHat', DNF_EL8_LATEST, '4.18.0-553.27.1.el8_10.x86_64'),
                                  ('Suse', ZYPPER_LEAP152, '5.3.18-lp152.19-default')):
        refused = before(family, text)
        assert refused['target'] == release and not refused['validation']['ok']
        assert 'below the minimum 5.6' in refused['validation']['refusals'][0]
        assert 'set allow_old: true' in refused['validation']['refusals'][0]
        # the overrides: allow_old (avic_kernel_allow_old), or a lower minimum (avic_kernel_min_version)
        assert before(family, text, allow_old=True)['validation']['ok']
        assert before(family, text, minimum='4.18')['validation']['ok']


def test_known_issue_versions_warn_or_refuse_by_variable():
    for family, text in (('RedHat', DNF_FEDORA32_GA), ('Archlinux', PACMAN_SI_2020)):
        warned = before(family, text)
        assert warned['validation']['ok'] and warned['validation']['refusals'] == []
        assert 'older than 5.6.13' in warned['validation']['warnings'][0]
        assert '(upstream 5.6.' in warned['validation']['warnings'][0]
        refused = before(family, text, refuse_known_issues=True)
        assert not refused['validation']['ok']
        assert 'Set refuse_known_issues: false' in refused['validation']['refusals'][0]
    # a SUSE 5.6 kernel does not tell its upstream patch level: no guess, no warning
    suse = before('Suse', ZYPPER_TUMBLEWEED.replace('6.12.1-1.1', '5.6.0-1.2'), refuse_known_issues=True)
    assert suse['validation']['ok']
    assert [f['id'] for f in suse['validation']['findings']].count('kernel_patch_unknown') == 1


def test_version_must_be_offered_by_the_repositories():
    ok = before('RedHat', DNF_EL9_ALL, 'version', '5.14.0-427.42.1.el9_4.x86_64')
    assert ok['validation']['ok'] and ok['install']['names'] == ['kernel-5.14.0-427.42.1.el9_4']
    # written without the architecture, the same kernel
    assert before('RedHat', DNF_EL9_ALL, 'version', '5.14.0-427.42.1.el9_4')['target'] == \
        '5.14.0-427.42.1.el9_4.x86_64'
    missing = before('RedHat', DNF_EL9_ALL, 'version', '5.14.0-999.el9.x86_64')
    assert not missing['validation']['ok'] and 'not available' in missing['validation']['refusals'][0]
    assert '5.14.0-503.14.1.el9_5.x86_64' in missing['validation']['refusals'][0]
    suse = before('Suse', ZYPPER_LEAP, 'version', '6.4.0-150600.23.7-default')
    assert suse['validation']['ok'] and suse['install']['names'] == ['kernel-default=6.4.0-150600.23.7.3']
    assert before('Suse', ZYPPER_LEAP, 'version', '6.4.0-150600.21.2')['target'] == '6.4.0-150600.21-default'
    # a kernel only the rpm database still has is not installable
    assert not before('Suse', ZYPPER_LEAP, 'version', '6.4.0-150600.23.3-default')['validation']['ok']
    assert not before('Suse', ZYPPER_NONE, 'version', '6.4.0-150600.23.7-default')['validation']['ok']
    with pytest.raises(kp.PlanError, match='IgnorePkg'):
        before('Archlinux', PACMAN_SI_TESTING_FIRST, 'version', '6.12.1-arch1-1')


def test_latest_without_a_candidate_is_refused_clearly():
    with pytest.raises(kp.PlanError, match='no kernel-default package for x86_64.*zypper repos'):
        before('Suse', ZYPPER_NONE)
    with pytest.raises(kp.PlanError, match='no linux package.*pacman -Syu'):
        before('Archlinux', "error: package 'linux' was not found\n")
    with pytest.raises(kp.PlanError, match='dnf repolist'):
        before('RedHat', '')


def test_read_back_fails_when_another_kernel_got_installed():
    plan = dict(before('Archlinux', PACMAN_SI_TESTING_FIRST), flavour=None, boot_loader='grub',
                grub_os='Arch Linux')
    # the sync database was refreshed between the check and pacman -S: not the kernel checked
    with pytest.raises(kp.PlanError, match='6.12.2-arch1-1 was checked.*installed kernels are 6.12.1-arch1-1'):
        kp.resolve(plan, PACMAN_LINUX_FILES)
    suse = dict(before('Suse', ZYPPER_LEAP), flavour=None, boot_loader='grub', grub_os=None)
    assert kp.resolve(suse, LEAP_RPM_FILES)['target'] == '6.4.0-150600.23.25-default'


class RecordedTool(object):
    """The module's side of AnsibleModule for avic_kernel_select.repo_kernels: the package
    manager's exit code and output as recorded above, and fail_json as an exception."""

    def __init__(self, rc, out, err=''):
        self.result, self.calls = (rc, out, err), []

    def get_bin_path(self, name):
        return '/usr/bin/%s' % name

    def run_command(self, argv, environ_update=None):
        self.calls.append((argv, environ_update))
        return self.result

    def fail_json(self, **result):
        raise RuntimeError(result['msg'])


def test_the_module_reads_the_tools_exit_codes():
    from ansible_collections.vfio.avic.plugins.modules import avic_kernel_select as select
    tool = RecordedTool(0, PACMAN_SI_TESTING_FIRST)
    argv, found = select.repo_kernels(tool, 'Archlinux', 'latest', 'x86_64')
    assert argv == ['pacman', '-Si', 'linux'] and found[0]['release'] == '6.12.2-arch1-1'
    # labels of pacman -Si are translated: the query runs in the C locale
    assert tool.calls == [(['/usr/bin/pacman', '-Si', 'linux'], {'LC_ALL': 'C', 'LANG': 'C'})]
    assert select.repo_kernels(RecordedTool(1, '', "error: package 'linux' was not found\n"),
                               'Archlinux', 'latest', 'x86_64')[1] == []
    assert select.repo_kernels(RecordedTool(104, ZYPPER_NONE), 'Suse', 'latest', 'x86_64')[1] == []
    with pytest.raises(RuntimeError, match='dnf -q repoquery.*failed \\(rc 1\\): Error: Failed to download metadata'):
        select.repo_kernels(RecordedTool(1, '', "Error: Failed to download metadata for repo 'updates'"),
                            'RedHat', 'latest', 'x86_64')


def test_install_spec_keeps_the_debian_family_as_before():
    assert kp.install_spec('debian', 'latest', ['linux-image-amd64'], '6.12.12+bpo-amd64') == {
        'names': ['linux-image-6.12.12+bpo-amd64'], 'state': 'latest'}
    assert kp.install_spec('debian', 'latest', ['linux-image-amd64']) == {
        'names': ['linux-image-amd64'], 'state': 'latest'}
    assert kp.install_spec('proxmox', 'latest', ['proxmox-default-kernel']) == {
        'names': ['proxmox-default-kernel'], 'state': 'latest'}
    assert kp.install_spec('debian', 'version', ['linux-image-6.1.0-27-amd64'], '6.1.0-27-amd64') == {
        'names': ['linux-image-6.1.0-27-amd64'], 'state': 'present'}
    assert kp.install_spec('RedHat', 'keep', ['kernel-core-6.9.1-200.fc40']) == {
        'names': ['kernel-core-6.9.1-200.fc40'], 'state': 'present'}


# --- Arch: IgnorePkg merged into pacman.conf --------------------------------------------------

STOCK_PACMAN_CONF = '''#
# /etc/pacman.conf
#
# See the pacman.conf(5) manpage for option and repository directives

#
# GENERAL OPTIONS
#
[options]
# The following paths are commented out with their default values listed.
# If you wish to use different paths, uncomment and update the paths.
#RootDir     = /
#DBPath      = /var/lib/pacman/
#CacheDir    = /var/cache/pacman/pkg/
#LogFile     = /var/log/pacman.log
#GPGDir      = /etc/pacman.d/gnupg/
#HookDir     = /etc/pacman.d/hooks/
HoldPkg     = pacman glibc
#XferCommand = /usr/bin/curl -L -C - -f -o %o %u
#CleanMethod = KeepInstalled
Architecture = auto

# Pacman won't upgrade packages listed in IgnorePkg and members of IgnoreGroup
#IgnorePkg   =
#IgnoreGroup =

#NoUpgrade   =
#NoExtract   =

# Misc options
#UseSyslog
#Color
CheckSpace
ParallelDownloads = 5

SigLevel    = Required DatabaseOptional
LocalFileSigLevel = Optional

[core]
Include = /etc/pacman.d/mirrorlist

[extra]
Include = /etc/pacman.d/mirrorlist
'''
NAMES = ['linux', 'linux-headers']


def test_stock_pacman_conf_gets_a_line_after_the_commented_default():
    result = kernel_pin.ignorepkg_merge(STOCK_PACMAN_CONF, NAMES)
    assert result['changed'] and result['added'] == NAMES
    lines = result['content'].splitlines()
    index = lines.index('#IgnorePkg   =')
    assert lines[index + 1] == 'IgnorePkg   = linux linux-headers'
    # nothing else changed: removing the new line gives the file back
    assert '\n'.join(lines[:index + 1] + lines[index + 2:]) + '\n' == STOCK_PACMAN_CONF


def test_existing_entries_are_kept_and_extended():
    text = STOCK_PACMAN_CONF.replace('#IgnorePkg   =\n', '#IgnorePkg   =\nIgnorePkg = nvidia nvidia-utils\n')
    result = kernel_pin.ignorepkg_merge(text, NAMES)
    assert 'IgnorePkg = nvidia nvidia-utils linux linux-headers\n' in result['content']
    assert result['content'].count('IgnorePkg') == text.count('IgnorePkg')
    again = kernel_pin.ignorepkg_merge(result['content'], NAMES)
    assert not again['changed'] and again['content'] == result['content']


def test_several_ignorepkg_lines_and_globs():
    text = STOCK_PACMAN_CONF.replace(
        '#IgnorePkg   =\n', '#IgnorePkg   =\nIgnorePkg = linux\nIgnorePkg = mesa   # pinned for the GPU\n')
    result = kernel_pin.ignorepkg_merge(text, NAMES)
    assert result['added'] == ['linux-headers']
    assert 'IgnorePkg = linux\n' in result['content']
    assert 'IgnorePkg = mesa linux-headers   # pinned for the GPU\n' in result['content']
    globbed = STOCK_PACMAN_CONF.replace('#IgnorePkg   =\n', 'IgnorePkg = linux*\n')
    assert not kernel_pin.ignorepkg_merge(globbed, NAMES)['changed']


def test_ignorepkg_outside_options_does_not_count():
    text = '[options]\nArchitecture = auto\n\n[custom]\nIgnorePkg = linux linux-headers\nServer = file:///srv\n'
    result = kernel_pin.ignorepkg_merge(text, NAMES)
    assert result['content'].startswith('[options]\nIgnorePkg   = linux linux-headers\nArchitecture = auto\n')
    assert result['content'].endswith('[custom]\nIgnorePkg = linux linux-headers\nServer = file:///srv\n')


def test_pacman_conf_without_options_is_refused():
    with pytest.raises(kernel_pin.PinError, match='set pin: false') as exc:
        kernel_pin.ignorepkg_merge('[core]\nInclude = /etc/pacman.d/mirrorlist\n', NAMES)
    assert exc.value.field == 'pin'
    with pytest.raises(kernel_pin.PinError, match='set avic_kernel_pin: false'):
        kernel_pin.ignorepkg_merge('[core]\n', NAMES, role_filters.KERNEL_ROLE_NAMES['pin'])


def test_the_module_merges_pacman_conf(tmp_path):
    """avic_kernel_select computes the Arch pin's pacman.conf (what replaced the
    avic_kernel_ignorepkg filter), read from the host; pin=false skips it."""
    from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
    from ansible_collections.vfio.avic.plugins.modules import avic_kernel_select as select
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc' / 'pacman.conf').write_text(STOCK_PACMAN_CONF)
    reader = HostFiles(root=str(tmp_path))
    plan = kp.plan('Archlinux', 'keep', '6.12.1-arch1-1', 'arch')
    merge = select.pacman_pin(reader, plan, {'pin': True})
    assert merge == kernel_pin.ignorepkg_merge(STOCK_PACMAN_CONF, ['linux', 'linux-headers'])
    assert merge['changed'] and merge['added'] == ['linux', 'linux-headers']
    assert select.pacman_pin(reader, plan, {'pin': False}) is None
    assert select.pacman_pin(reader, kp.plan('Debian', 'keep', '6.1.0-26-amd64', 'debian'), {'pin': True}) is None
    (tmp_path / 'etc' / 'pacman.conf').unlink()
    with pytest.raises(kernel_pin.PinError, match='/etc/pacman.conf cannot be read.*set pin: false'):
        select.pacman_pin(reader, plan, {'pin': True})


def test_filters_are_registered():
    # avic_kernel_resolve and avic_kernel_ignorepkg were removed (changelog: breaking_changes);
    # avic_kernel_select returns those decisions; the keep plan is the one kernel filter, internal
    assert [n for n in role_filters.FilterModule().filters() if n.startswith('_kernel')] == ['_kernel_keep_plan']


# --- which steps of change.yml apply (vars/main.yml, as Ansible templates them) ---------------

STEPS = ('__avic_kernel_install_needed', '__avic_kernel_resolve_needed', '__avic_kernel_pin_needed',
         '__avic_kernel_default_entry_needed', '__avic_kernel_reboot_needed')
RUNNING = '6.12.95+deb12-amd64'


def steps(plan, reboot_required=False, container=False, **play):
    values = role_vars('kernel', 'Debian', STEPS, facts={'container': container},
                       __avic_kernel_plan=plan, avic_kernel_reboot_required=reboot_required, **play)
    return sorted(name[len('__avic_kernel_'):-len('_needed')] for name, value in values.items()
                  if value in (True, 'True'))


def keep_plan(**changes):
    plan = {'dist': 'debian', 'running': RUNNING, 'target': RUNNING, 'installed': [RUNNING],
            'packages': ['linux-image-' + RUNNING], 'held': ['linux-image-' + RUNNING],
            'pin': {'method': 'apt-hold'}, 'default_entry': None}
    plan.update(changes)
    return plan


def test_nothing_applies_to_a_kept_and_held_kernel():
    """The idempotent run: change.yml is one skipped include."""
    assert steps(keep_plan()) == []
    assert steps(keep_plan(), avic_kernel_reboot=True) == []


def test_a_kernel_not_held_yet_is_pinned_unless_it_came_from_no_package():
    assert steps(keep_plan(held=[])) == ['pin']
    assert steps(keep_plan(held=[]), avic_kernel_pin=False) == []
    unpackaged = keep_plan(held=[], installed=['6.1.0-26-amd64'])
    assert steps(unpackaged) == []
    # another method than apt-hold decides in its own tasks
    assert steps(keep_plan(pin={'method': 'dnf-versionlock'}, dist='RedHat')) == ['pin']


def test_another_target_is_installed_pinned_made_default_and_rebooted_into():
    plan = keep_plan(target='6.12.99+deb12-amd64', default_entry={'entry': 'x'})
    assert steps(plan, reboot_required=True) == ['default_entry', 'install', 'pin']
    assert steps(plan, reboot_required=True, avic_kernel_reboot=True) == ['default_entry', 'install', 'pin', 'reboot']
    assert steps(plan, reboot_required=True, avic_kernel_reboot=True, container=True) == ['install', 'pin']
    assert steps(plan, reboot_required=True, avic_kernel_set_default=False) == ['install', 'pin']


def test_other_modes_install_and_read_back_where_the_family_needs_it():
    assert steps(keep_plan(), avic_kernel_mode='latest') == ['install']
    # no target before installing: the resolve step sets it, and the pin is decided after it
    assert steps(keep_plan(target=None), avic_kernel_mode='latest') == ['install', 'resolve']
    assert 'pin' in steps(keep_plan(target='6.12.99+deb12-amd64'), avic_kernel_mode='latest')
    assert steps(keep_plan(dist='RedHat', pin={'method': 'dnf-versionlock'}), avic_kernel_mode='version') == \
        ['install', 'pin', 'resolve']
