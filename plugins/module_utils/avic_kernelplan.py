# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the kernel role installs, pins and boots, per distribution family (stdlib only).

Pure decisions, so that the families that cannot run in the test lab (Fedora/RHEL, Arch,
openSUSE, Proxmox, Ubuntu) are covered by unit tests: the package to install for a mode,
the pin (apt hold, apt preferences, dnf versionlock, pacman IgnorePkg, zypper lock,
proxmox-boot-tool pin), the default boot entry command, and whether a wanted kernel meets
the AVIC rules of avic_kernel.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils import avic_kernel

FAMILIES = ('Debian', 'RedHat', 'Archlinux', 'Suse')
MODES = ('keep', 'latest', 'version')

# The kernel package per family and flavour; {release} is a uname -r string.
META_PACKAGES = {
    'debian': 'linux-image-{flavour}',
    'ubuntu': 'linux-image-{flavour}',
    'proxmox': 'proxmox-default-kernel',
    'RedHat': 'kernel',
    'Archlinux': 'linux',
    'Suse': 'kernel-default',
}
VERSIONED_PACKAGES = {
    'debian': 'linux-image-{release}',
    'ubuntu': 'linux-image-{release}',
    'proxmox': 'proxmox-kernel-{release}',
    'RedHat': 'kernel-{release}',
    'Archlinux': None,   # Arch carries one version per package name
    'Suse': 'kernel-default-{release}',
}
DEFAULT_FLAVOUR = {'debian': 'amd64', 'ubuntu': 'generic'}
_VERSION_RE = re.compile(r'^\d+\.\d+(\.\d+)?([-+~._][0-9A-Za-z.+~_-]*)?$')


class PlanError(ValueError):
    """An input the user must fix (named in the message)."""


def distro(family, os_id=None, proxmox=False):
    """The packaging flavour: debian, ubuntu, proxmox, RedHat, Archlinux or Suse."""
    if family not in FAMILIES:
        raise PlanError('unsupported distribution family %r: the kernel role knows %s'
                        % (family, ', '.join(FAMILIES)))
    if family != 'Debian':
        return family
    if proxmox:
        return 'proxmox'
    return 'ubuntu' if (os_id or '').lower() in ('ubuntu', 'pop', 'linuxmint') else 'debian'


def check_version_string(version):
    """A kernel version as the user wrote it ('6.12.9+bpo-amd64', '6.8.0-45-generic', '6.8')."""
    text = str(version or '').strip()
    if not _VERSION_RE.match(text):
        raise PlanError('avic_kernel_version %r is not a kernel version: write it as uname -r prints '
                        'it, for example "6.1.0-26-amd64", "6.8.0-45-generic" or "6.8.12-4-pve"'
                        % (version,))
    return text


def validate(release, minimum='5.6', allow_old=False, refuse_known_issues=False, upstream=None):
    """Check a wanted kernel against the AVIC rules: {ok, refusals, warnings, findings}."""
    try:
        parsed = avic_kernel.parse_release(release)
        floor = avic_kernel.version_tuple(minimum)
    except avic_kernel.KernelReleaseError as exc:
        raise PlanError('avic_kernel_min_version or the wanted kernel: %s' % exc)
    findings = avic_kernel.kernel_issues(release, upstream)
    refusals, warnings = [], []
    if parsed['version'] < floor and not allow_old:
        refusals.append('kernel %s is below the minimum %s for AVIC (%s); set '
                        'avic_kernel_allow_old: true to install it anyway'
                        % (release, minimum, 'hard floor 4.7, in-kernel irqchip from 5.6'))
    for item in findings:
        if item['id'] == 'kernel_known_issue':
            if refuse_known_issues:
                refusals.append('%s Set avic_kernel_refuse_known_issues: false to accept it.'
                                % item['message'])
            else:
                warnings.append(item['message'])
    return {'ok': not refusals, 'refusals': refusals, 'warnings': warnings, 'findings': findings}


def packages(dist, mode, version=None, running=None, flavour=None):
    """The packages to install (latest/version) or to pin (keep)."""
    flavour = flavour or DEFAULT_FLAVOUR.get(dist, '')
    if mode not in MODES:
        raise PlanError('avic_kernel_mode must be one of %s, got %r' % (', '.join(MODES), mode))
    if mode == 'latest':
        return [META_PACKAGES[dist].format(flavour=flavour)]
    release = check_version_string(version if mode == 'version' else running)
    template = VERSIONED_PACKAGES[dist]
    if template is None:
        if mode == 'version':
            raise PlanError('Arch Linux packages carry one kernel version each: use avic_kernel_mode '
                            'latest (or keep) and pin with IgnorePkg')
        return [META_PACKAGES[dist]]
    if dist == 'proxmox':
        release = re.sub(r'-pve$', '', release)
        return ['proxmox-kernel-%s-pve-signed' % release if release.count('-') else
                'proxmox-kernel-%s' % release]
    if dist == 'RedHat':
        return ['kernel-core-%s' % re.sub(r'\.x86_64$', '', release)]
    return [template.format(release=release)]


def release_of(package, dist):
    """The uname -r release a versioned package installs, or None for meta packages."""
    prefixes = {'debian': 'linux-image-', 'ubuntu': 'linux-image-'}
    prefix = prefixes.get(dist)
    if prefix and package.startswith(prefix):
        rest = package[len(prefix):]
        return rest if re.match(r'^\d', rest) else None
    return None


def newest(releases):
    """The newest of several uname -r strings (unparsable ones ignored)."""
    best, best_key = None, None
    for release in releases or []:
        try:
            parsed = avic_kernel.parse_release(release)
        except avic_kernel.KernelReleaseError:
            continue
        numbers = tuple(int(n) for n in re.findall(r'\d+', parsed['suffix']))
        key = (parsed['version'], numbers)
        if best_key is None or key > best_key:
            best, best_key = release, key
    return best


def pin(dist, names, release=None):
    """How a kernel is pinned: {method, packages, file, content, command}."""
    names = list(names)
    if dist in ('debian', 'ubuntu'):
        return {'method': 'apt-hold', 'packages': names, 'file': None, 'content': None,
                'command': ['apt-mark', 'hold'] + names}
    if dist == 'proxmox':
        return {'method': 'proxmox-boot-tool', 'packages': names, 'file': None, 'content': None,
                'command': ['proxmox-boot-tool', 'kernel', 'pin', release] if release else None}
    if dist == 'RedHat':
        return {'method': 'dnf-versionlock', 'packages': names, 'file': None, 'content': None,
                'command': ['dnf', 'versionlock', 'add'] + names}
    if dist == 'Archlinux':
        return {'method': 'pacman-ignorepkg', 'packages': names, 'file': '/etc/pacman.conf',
                'content': 'IgnorePkg = %s' % ' '.join(names + ['%s-headers' % n for n in names]),
                'command': None}
    if dist == 'Suse':
        return {'method': 'zypper-lock', 'packages': names, 'file': None, 'content': None,
                'command': ['zypper', '--non-interactive', 'addlock'] + names}
    raise PlanError('no pin method for %r' % dist)


GRUB_OS_NAMES = {'debian': 'Debian GNU/Linux', 'ubuntu': 'Ubuntu', 'Archlinux': 'Arch Linux',
                 'Suse': 'openSUSE'}


def default_entry(dist, boot_loader, release):
    """How ``release`` becomes the default boot entry: {command, needs_saved_default} or None.

    GRUB (Debian, Ubuntu, Arch, openSUSE) selects a saved entry by its menu title, which needs
    GRUB_DEFAULT=saved in /etc/default/grub; grubby (Fedora/RHEL) names the kernel image;
    Proxmox's ``proxmox-boot-tool kernel pin`` already selects it.
    """
    if dist == 'proxmox' or boot_loader not in ('grub', 'grubby'):
        return None
    if dist == 'RedHat':
        return {'command': ['grubby', '--set-default', '/boot/vmlinuz-%s' % release],
                'needs_saved_default': False}
    name = GRUB_OS_NAMES.get(dist, 'GNU/Linux')
    return {'command': ['grub-set-default', 'Advanced options for %s>%s, with Linux %s'
                        % (name, name, release)],
            'needs_saved_default': True}


def plan(family, mode, running, os_id=None, proxmox=False, version=None, available=None,
         flavour=None, minimum='5.6', allow_old=False, refuse_known_issues=False,
         boot_loader=None):
    """The whole decision: {dist, packages, target, pin, default_entry, validation, action}."""
    dist = distro(family, os_id, proxmox)
    names = packages(dist, mode, version, running, flavour)
    if mode == 'keep':
        target = running
    elif mode == 'version':
        target = check_version_string(version)
    else:
        target = newest(available or []) or None
    validation = validate(target, minimum, allow_old, refuse_known_issues) if target else \
        {'ok': True, 'refusals': [], 'warnings': ['the newest available kernel is not known before '
                                                  'the package manager is asked'], 'findings': []}
    if mode == 'version' and available is not None and target not in available:
        validation['ok'] = False
        validation['refusals'].append(
            'kernel %s is not available from the configured repositories (available: %s)'
            % (target, ', '.join(sorted(available)[-5:]) or 'none'))
    return {'dist': dist, 'packages': names, 'target': target,
            'pin': pin(dist, names, target), 'default_entry': default_entry(dist, boot_loader, target)
            if target and mode != 'keep' else None,
            'validation': validation,
            'action': 'pin' if mode == 'keep' else 'install'}


def keep_plan(facts, minimum='5.6', allow_old=False, refuse_known_issues=False):
    """The plan of mode ``keep`` from the vfio_avic fact alone (Debian family, dpkg database read),
    the same shape as vfio.avic.avic_kernel_select returns, so no module call is needed."""
    osr = facts.get('os') or {}
    running = facts.get('kernel')
    if not running:
        raise PlanError('the vfio_avic fact has no running kernel release')
    dist = distro(osr.get('family'), osr.get('id'), osr.get('proxmox'))
    validation = validate(running, minimum, allow_old, refuse_known_issues)
    if validation['refusals']:
        raise PlanError(' '.join(validation['refusals']))
    installed = list(facts.get('kernel_packages') or [])
    names = packages(dist, 'keep', running=running)
    return {'running': running, 'target': running, 'dist': dist, 'packages': names,
            'installed': sorted(p['release'] for p in installed if p.get('release')),
            'held': sorted(p['package'] for p in installed if p.get('held')),
            'available': None, 'pin': pin(dist, names, running), 'default_entry': None,
            'warnings_rules': validation['warnings'], 'os': osr, 'flavour': None}
