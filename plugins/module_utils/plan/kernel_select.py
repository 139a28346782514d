# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which kernel the kernel role installs or pins, checked against the AVIC rules (stdlib only).

Pure decisions, so that the families that cannot run in the test lab (Fedora/RHEL, Arch,
openSUSE, Proxmox, Ubuntu) are covered by unit tests: the package to install for a mode, the
target kernel (the newest installable, a repository candidate of parse/packages.py, or the one
asked for), its validation against rules/kernel.py, the pin (plan/kernel_pin.py) and the default
boot entry (plan/default_entry.py), and, after installing, the kernel the package manager
installed (resolve()). selection() is the one shape of the decision that
vfio.avic.avic_kernel_select returns and keep_plan() computes from the vfio_avic fact.

Messages name the inputs by their field names (mode, version, minimum, allow_old,
refuse_known_issues: the options of vfio.avic.avic_kernel_select); a caller whose users write
other names passes ``names``, a dict field -> name (the kernel role's variables).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils.parse import packages as pkg_output
from ansible_collections.vfio.avic.plugins.module_utils.plan.default_entry import default_entry
from ansible_collections.vfio.avic.plugins.module_utils.plan.kernel_pin import pin
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules


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
    """An input the user must fix, named in the message; ``field`` is its field name, or None
    where the host is the cause."""

    def __init__(self, message, field=None):
        super(PlanError, self).__init__(message)
        self.field = field


def _name(names, field):
    return (names or {}).get(field, field)


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


def check_version_string(version, names=None):
    """A kernel version as the user wrote it ('6.12.9+bpo-amd64', '6.8.0-45-generic', '6.8')."""
    text = str(version or '').strip()
    if not _VERSION_RE.match(text):
        raise PlanError('%s %r is not a kernel version: write it as uname -r prints '
                        'it, for example "6.1.0-26-amd64", "6.8.0-45-generic" or "6.8.12-4-pve"'
                        % (_name(names, 'version'), version), 'version')
    return text


def validate(release, minimum='5.6', allow_old=False, refuse_known_issues=False, upstream=None,
             names=None):
    """Check a wanted kernel against the AVIC rules: {ok, refusals, warnings, findings}."""
    try:
        parsed = kernel_rules.parse_release(release)
        floor = kernel_rules.version_tuple(minimum)
    except kernel_rules.KernelReleaseError as exc:
        raise PlanError('%s or the wanted kernel: %s' % (_name(names, 'minimum'), exc), 'minimum')
    findings = kernel_rules.kernel_issues(release, upstream)
    refusals, warnings = [], []
    if parsed['version'] < floor and not allow_old:
        refusals.append('kernel %s is below the minimum %s for AVIC (%s); set '
                        '%s: true to install it anyway'
                        % (release, minimum, 'hard floor 4.7, in-kernel irqchip from 5.6',
                           _name(names, 'allow_old')))
    for item in findings:
        if item['id'] == 'kernel_known_issue':
            if refuse_known_issues:
                refusals.append('%s Set %s: false to accept it.'
                                % (item['message'], _name(names, 'refuse_known_issues')))
            else:
                warnings.append(item['message'])
    return {'ok': not refusals, 'refusals': refusals, 'warnings': warnings, 'findings': findings}


def packages(dist, mode, version=None, running=None, flavour=None, names=None):
    """The packages to install (latest/version) or to pin (keep)."""
    flavour = flavour or DEFAULT_FLAVOUR.get(dist, '')
    if mode not in MODES:
        raise PlanError('%s must be one of %s, got %r' % (_name(names, 'mode'), ', '.join(MODES), mode),
                        'mode')
    if mode == 'latest':
        return [META_PACKAGES[dist].format(flavour=flavour)]
    release = check_version_string(version if mode == 'version' else running, names)
    template = VERSIONED_PACKAGES[dist]
    if template is None:
        if mode == 'version':
            raise PlanError('Arch Linux packages carry one kernel version each: use %s '
                            'latest (or keep) and pin with IgnorePkg' % _name(names, 'mode'), 'mode')
        return [META_PACKAGES[dist]]
    if dist == 'proxmox':
        release = re.sub(r'-pve$', '', release)
        return ['proxmox-kernel-%s-pve-signed' % release if release.count('-') else
                'proxmox-kernel-%s' % release]
    if dist == 'RedHat':
        return ['kernel-core-%s' % re.sub(r'\.x86_64$', '', release)]
    return [template.format(release=release)]


def newest(releases):
    """The newest of several uname -r strings (unparsable ones ignored)."""
    best, best_key = None, None
    for release in releases or []:
        try:
            key = pkg_output.release_key(release)
        except kernel_rules.KernelReleaseError:
            continue
        if best_key is None or key > best_key:
            best, best_key = release, key
    return best


def match_candidate(version, candidates, arch='x86_64'):
    """The candidate for the wanted version: its uname -r release, that release without the
    architecture (6.11.10-300.fc41) or the package version (6.4.0-150600.23.25.1); else None."""
    for item in candidates or []:
        if version in (item['release'], item['version'], re.sub(r'\.%s$' % re.escape(arch), '', item['release'])):
            return item
    return None


def arch_fallbacks(pkgbases, target_package):
    """Kernel packages other than ``target_package`` (from /usr/lib/modules/*/pkgbase): what
    still boots after pacman has replaced ``target_package``."""
    return sorted(set(p.strip() for p in pkgbases or [] if p.strip() and p.strip() != target_package))


def install_spec(dist, mode, names, target=None, candidate=None):
    """What the role installs: {names, state}.

    An exact package where the version was resolved before installing: the dnf or zypper spec of
    the validated candidate, linux-image-<release> on Debian/Ubuntu. pacman has one version per
    package name, so Arch installs ``linux`` at the sync database's version (the validated one);
    the same for ``latest`` where no version is known before (Proxmox, a Debian flavour without
    versioned packages), which the role reads back afterwards.
    """
    if mode == 'keep':
        return {'names': list(names), 'state': 'present'}
    if candidate and dist in ('RedHat', 'Suse'):
        return {'names': [candidate['install']], 'state': 'present'}
    if target and dist in ('debian', 'ubuntu'):
        return {'names': ['linux-image-%s' % target], 'state': 'latest' if mode == 'latest' else 'present'}
    return {'names': list(names), 'state': 'latest' if mode == 'latest' else 'present'}


def plan(family, mode, running, os_id=None, proxmox=False, version=None, available=None,
         flavour=None, minimum='5.6', allow_old=False, refuse_known_issues=False,
         boot_loader=None, os_name=None, arch_kernels=None, candidates=None, arch='x86_64',
         names=None):
    """The whole decision: {dist, packages, install, target, pin, default_entry, validation, action}.

    ``latest`` with ``available`` (Debian, Ubuntu: installable releases of the flavour) targets
    the newest. ``candidates`` (Fedora/RHEL, Arch, openSUSE: repo_candidates() of the
    repository query) give ``latest`` the first candidate and ``version`` the matching one, so
    the rules run on the exact kernel before anything is installed. Without either, ``latest``
    has no target until the package manager has installed the newest and resolve() reads it
    back (Proxmox). ``arch_kernels``: the pkgbase names of /usr/lib/modules.
    """
    dist = distro(family, os_id, proxmox)
    pkgs = packages(dist, mode, version, running, flavour, names)
    chosen = None
    if candidates is not None and mode != 'keep':
        available = [item['release'] for item in candidates]
        chosen = candidates[0] if mode == 'latest' and candidates else \
            match_candidate(version, candidates, arch) if mode == 'version' else None
        if mode == 'latest' and not candidates:
            raise PlanError('%s latest: the configured repositories offer no %s package%s, '
                            'so there is no kernel to check or install; check the repositories (%s)'
                            % (_name(names, 'mode'), pkgs[0], '' if dist == 'Archlinux' else ' for %s' % arch,
                               pkg_output.REPO_HINTS.get(dist, 'the package manager')))
    if mode == 'keep':
        target = running
    elif mode == 'version':
        target = chosen['release'] if chosen else check_version_string(version, names)
    else:
        target = chosen['release'] if chosen else (newest(available or []) or None)
    validation = validate(target, minimum, allow_old, refuse_known_issues,
                          (chosen or {}).get('upstream'), names) if target else \
        {'ok': True, 'refusals': [], 'warnings': [], 'findings': []}
    if mode == 'version' and available is not None and target not in available:
        validation['ok'] = False
        validation['refusals'].append(
            'kernel %s is not available from the configured repositories (available: %s)'
            % (target, ', '.join(sorted(available)[-5:]) or 'none'))
    if dist == 'Archlinux' and mode == 'latest' and arch_kernels is not None \
            and not arch_fallbacks(arch_kernels, pkgs[0]):
        validation['ok'] = False
        validation['refusals'].append(
            'pacman replaces the %s package in place, so after the upgrade no other kernel would '
            'be left to boot: install a second kernel package as a fallback first (for example '
            'linux-lts, and a boot entry for it), or use %s: keep' % (pkgs[0], _name(names, 'mode')))
    return {'dist': dist, 'packages': pkgs, 'target': target,
            'install': install_spec(dist, mode, pkgs, target, chosen),
            'candidate': chosen,
            'pin': pin(dist, pkgs, target),
            'default_entry': default_entry(dist, boot_loader, target, os_name, pkgs[0])
            if mode != 'keep' else None,
            'validation': validation,
            'action': 'pin' if mode == 'keep' else 'install'}


def selection(decided, running, osr, flavour=None, installed=None, held=None, available=None,
              candidates=None, query=None, boot_loader=None, grub_os=None, merge=None):
    """The decision as vfio.avic.avic_kernel_select returns it and the kernel role keeps it, from
    plan()'s ``decided`` and what was read on the host: the one shape of both producers.
    ``merge``: the pacman.conf IgnorePkg merge of an Arch pin (kernel_pin.ignorepkg_merge())."""
    return {'running': running, 'target': decided['target'], 'dist': decided['dist'],
            'packages': decided['packages'], 'install': decided['install'],
            'candidate': decided['candidate'], 'candidates': candidates, 'query': query,
            'installed': list(installed or []), 'held': held, 'available': available,
            'pin': dict(decided['pin'], merge=merge), 'default_entry': decided['default_entry'],
            'warnings_rules': decided['validation']['warnings'], 'os': osr, 'flavour': flavour,
            'boot_loader': boot_loader, 'grub_os': grub_os,
            'reboot_required': reboot_required(running, decided['target'])}


def reboot_required(running, target):
    """Whether the host must boot another kernel for the plan: a target known and not running."""
    return bool(target) and target != running


def resolve(selected, listing, minimum='5.6', allow_old=False, refuse_known_issues=False, names=None):
    """The plan after the package manager ran, from what the family's installed-kernel query printed.

    Where the target was validated before installing (Fedora/RHEL, Arch, openSUSE), this is a
    consistency check: that exact kernel must now be installed, else PlanError names what is.
    Where it was not known (``latest`` on Proxmox, or a Debian flavour apt offered no versioned
    package of), the newest installed kernel becomes the target and the rules run on it. Raises
    PlanError when the rules refuse that kernel (it stays installed, next to the others;
    nothing is removed) and when none can be found.
    """
    dist = selected['dist']
    releases = pkg_output.installed_releases(
        dist, listing, selected.get('flavour') if dist in ('debian', 'ubuntu') else None)
    validated = selected.get('target')
    if validated:
        if validated not in releases:
            asked = (selected.get('install') or {}).get('names') or selected['packages']
            raise PlanError('kernel %s was checked against the AVIC rules before installing, but after '
                            'installing %s the installed kernels are %s: the repositories changed in '
                            'between, or another tool installed a kernel. The role stops before pinning '
                            'or booting it; run it again to check the kernel the repositories offer now'
                            % (validated, ', '.join(asked), ', '.join(releases) or 'none'))
        return dict(selected)
    target = newest(releases)
    if not target:
        raise PlanError('%s latest: no installed kernel of %s was found after the '
                        'package manager ran, so there is nothing to pin or boot; check that the '
                        'package installs a kernel on this host'
                        % (_name(names, 'mode'), ', '.join(selected['packages'])))
    validation = validate(target, minimum, allow_old, refuse_known_issues, names=names)
    if validation['refusals']:
        raise PlanError('the newest installed kernel %s: %s' % (target, ' '.join(validation['refusals'])))
    result = dict(selected)
    result.update(target=target,
                  pin=dict(pin(dist, selected['packages'], target), merge=(selected.get('pin') or {}).get('merge')),
                  default_entry=default_entry(dist, selected.get('boot_loader'), target,
                                              selected.get('grub_os'), selected['packages'][0]),
                  warnings_rules=validation['warnings'],
                  reboot_required=reboot_required(selected.get('running'), target))
    return result


def keep_plan(facts, minimum='5.6', allow_old=False, refuse_known_issues=False, names=None):
    """The selection() of mode ``keep`` from the vfio_avic fact alone (Debian family, dpkg
    database read), through plan() as vfio.avic.avic_kernel_select does, so no module call is
    needed. Raises PlanError where the rules refuse the running kernel."""
    osr = facts.get('os') or {}
    running = facts.get('kernel')
    if not running:
        raise PlanError('the vfio_avic fact has no running kernel release')
    decided = plan(osr.get('family'), 'keep', running, osr.get('id'), osr.get('proxmox'),
                   minimum=minimum, allow_old=allow_old, refuse_known_issues=refuse_known_issues,
                   names=names)
    if decided['validation']['refusals']:
        raise PlanError(' '.join(decided['validation']['refusals']))
    installed = list(facts.get('kernel_packages') or [])
    return selection(decided, running, osr,
                     installed=sorted(p['release'] for p in installed if p.get('release')),
                     held=sorted(p['package'] for p in installed if p.get('held')))
