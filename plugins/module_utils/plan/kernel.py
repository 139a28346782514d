# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the kernel role installs, pins and boots, per distribution family (stdlib only).

Pure decisions, so that the families that cannot run in the test lab (Fedora/RHEL, Arch,
openSUSE, Proxmox, Ubuntu) are covered by unit tests: the package to install for a mode,
the pin (apt hold, apt preferences, dnf versionlock, pacman IgnorePkg, zypper lock,
proxmox-boot-tool pin), the default boot entry, the kernel the repositories offer (parsed from
apt-cache, dnf repoquery, pacman -Si and zypper search before anything is installed), the kernel a
package manager installed (read back afterwards), the pacman.conf IgnorePkg merge, and whether a
wanted kernel meets the AVIC rules of kernel_rules.py. The repository queries are candidate_query()
here (run by vfio.avic.avic_kernel_select); the role's other commands are in
roles/kernel/vars/<family>.yml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import re
import xml.etree.ElementTree as ET

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
        parsed = kernel_rules.parse_release(release)
        floor = kernel_rules.version_tuple(minimum)
    except kernel_rules.KernelReleaseError as exc:
        raise PlanError('avic_kernel_min_version or the wanted kernel: %s' % exc)
    findings = kernel_rules.kernel_issues(release, upstream)
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


def newest(releases):
    """The newest of several uname -r strings (unparsable ones ignored)."""
    best, best_key = None, None
    for release in releases or []:
        try:
            parsed = kernel_rules.parse_release(release)
        except kernel_rules.KernelReleaseError:
            continue
        numbers = tuple(int(n) for n in re.findall(r'\d+', parsed['suffix']))
        key = (parsed['version'], numbers)
        if best_key is None or key > best_key:
            best, best_key = release, key
    return best


def pin(dist, names, release=None):
    """How a kernel is pinned: {method, packages, file, ignore, command}.

    Proxmox pins a release: without one (``latest`` before the package manager has installed
    it) ``command`` is None and the role reads the installed kernel back first (resolve()).
    """
    names = list(names)
    result = {'packages': names, 'file': None, 'ignore': None, 'command': None}
    if dist in ('debian', 'ubuntu'):
        result.update(method='apt-hold', command=['apt-mark', 'hold'] + names)
    elif dist == 'proxmox':
        result.update(method='proxmox-boot-tool',
                      command=['proxmox-boot-tool', 'kernel', 'pin', release] if release else None)
    elif dist == 'RedHat':
        result.update(method='dnf-versionlock', command=['dnf', 'versionlock', 'add'] + names)
    elif dist == 'Archlinux':
        result.update(method='pacman-ignorepkg', file='/etc/pacman.conf',
                      ignore=names + ['%s-headers' % n for n in names])
    elif dist == 'Suse':
        result.update(method='zypper-lock', command=['zypper', '--non-interactive', 'addlock'] + names)
    else:
        raise PlanError('no pin method for %r' % dist)
    return result


# --- Debian and Ubuntu: the kernels of one flavour, and whether apt can install them ---------

# <upstream version>[-<ABI>|+<tag>]-<flavour>: 6.1.0-26-amd64, 6.1.0-26-cloud-amd64,
# 6.12.12+bpo-rt-amd64, 6.12.38+deb13-amd64, 5.10.0-0.bpo.15-amd64, 6.8.0-45-generic.
_DEB_RELEASE_RE = re.compile(r'^(\d+\.\d+\.\d+)(-\d+(?:\.[0-9A-Za-z]+)*|\+[0-9A-Za-z.~]+)?-(?P<flavour>[a-z].*)$')


def release_flavour(release):
    """The Debian/Ubuntu flavour of a linux-image release ('cloud-amd64' of 6.1.0-26-cloud-amd64)."""
    match = _DEB_RELEASE_RE.match(release or '')
    return match.group('flavour') if match else None


def flavour_releases(package_names, flavour):
    """The releases of the linux-image-<release> names whose flavour is exactly ``flavour``:
    for 'amd64' neither -rt-amd64, -cloud-amd64 nor -amd64-dbg/-unsigned."""
    found = set()
    for name in package_names or []:
        name = name.strip()
        if not name.startswith('linux-image-'):
            continue
        release = name[len('linux-image-'):]
        if release[:1].isdigit() and release_flavour(release) == flavour:
            found.add(release)
    return sorted(found)


def apt_candidates(policy_text):
    """{package: candidate version or None} from `apt-cache policy PKG...` output. A name that
    `apt-cache pkgnames` lists only because another package provides it has no candidate."""
    result, current = {}, None
    for line in (policy_text or '').splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(':'):
            current = line.rstrip()[:-1]
            result[current] = None
        elif current and line.strip().startswith('Candidate:'):
            value = line.split(':', 1)[1].strip()
            result[current] = None if value in ('', '(none)') else value
    return result


def installable(releases, policy_text):
    """The releases whose linux-image-<release> package apt has a candidate for."""
    candidates = apt_candidates(policy_text)
    return sorted(r for r in releases or [] if candidates.get('linux-image-%s' % r))


# --- Fedora/RHEL, Arch, openSUSE: the kernel the repositories offer, read before installing ---

# dnf 4 and dnf 5 both expand these tags and the \n escape; one package per line.
DNF_QUERYFORMAT = '%{name} %{epoch} %{version} %{release} %{arch}\\n'
CANDIDATE_TOOLS = {'RedHat': 'dnf', 'Archlinux': 'pacman', 'Suse': 'zypper'}
REPO_HINTS = {'RedHat': 'dnf repolist',
              'Archlinux': 'the sync database is as old as your last pacman -Sy; refresh it with pacman -Syu',
              'Suse': 'zypper repos; zypper refresh'}


def candidate_query(dist, mode, package):
    """The read-only command that lists the kernel package ``package`` in the repositories.

    RedHat: `dnf repoquery --available` (the newest only for ``latest``); Arch: `pacman -Si`,
    which reads the sync database as the user last refreshed it (nothing here syncs it);
    openSUSE: `zypper --xmlout search --details --match-exact`. None for the Debian family,
    whose candidates come from apt-cache.
    """
    if dist == 'RedHat':
        return (['dnf', '-q', 'repoquery', '--available', '--qf', DNF_QUERYFORMAT]
                + (['--latest-limit', '1'] if mode == 'latest' else []) + [package])
    if dist == 'Archlinux':
        return ['pacman', '-Si', package]
    if dist == 'Suse':
        return ['zypper', '--non-interactive', '--xmlout', 'search', '--details', '--match-exact',
                '--type', 'package', package]
    return None


def _candidate(release, install, version, repository=None, upstream=None):
    """``upstream``: the upstream kernel version where the packaging is known to carry it
    (Fedora and Arch build upstream stable releases), so that the patch-level rules apply; None
    where the version is a base the distribution backports into (RHEL, SLE, openSUSE Leap)."""
    return {'release': release, 'install': install, 'version': version, 'repository': repository,
            'upstream': upstream}


def _release_key(release):
    parsed = kernel_rules.parse_release(release)
    return parsed['version'], tuple(int(n) for n in re.findall(r'\d+', parsed['suffix']))


def _newest_first(candidates):
    usable = []
    for item in candidates:
        try:
            usable.append((_release_key(item['release']), item))
        except kernel_rules.KernelReleaseError:
            continue
    usable.sort(key=lambda pair: pair[0], reverse=True)
    seen, result = set(), []
    for _key, item in usable:
        if item['release'] not in seen:
            seen.add(item['release'])
            result.append(item)
    return result


def dnf_candidates(text, package='kernel', arch='x86_64'):
    """Kernels in `dnf repoquery --qf DNF_QUERYFORMAT` output, newest first.

    The release is what uname -r prints for it (version-release.arch: 6.11.10-300.fc41.x86_64);
    ``install`` is the exact package spec (kernel-6.11.10-300.fc41). Other architectures, other
    names and lines dnf prints besides the list are skipped.
    """
    found = []
    for line in (text or '').replace('\\n', '\n').splitlines():
        parts = line.split()
        if len(parts) != 5 or parts[0] != package or parts[4] != arch:
            continue
        name, epoch, version, release, pkg_arch = parts
        evr = '%s-%s' % (version, release) if epoch in ('0', '(none)', '') else \
            '%s:%s-%s' % (epoch, version, release)
        found.append(_candidate('%s-%s.%s' % (version, release, pkg_arch), '%s-%s' % (name, evr), evr,
                                upstream=version if re.search(r'\.fc\d+$', release) else None))
    return _newest_first(found)


def arch_release(package, version):
    """uname -r of an Arch kernel package version: linux 6.12.1.arch1-1 -> 6.12.1-arch1-1,
    linux 6.12.arch1-1 -> 6.12.0-arch1-1, linux-lts 6.6.63-1 -> 6.6.63-1-lts, linux-zen
    6.12.1.zen1-1 -> 6.12.1-zen1-1-zen (the PKGBUILDs add -<pkgrel> and the package suffix)."""
    match = re.match(r'^(?:\d+:)?(\d+)\.(\d+)(?:\.(\d+))?(?:\.([a-z]+\d+))?-(\d+(?:\.\d+)?)$', version or '')
    if not match:
        return None
    major, minor, patch, tag, pkgrel = match.groups()
    release = '%s.%s.%s' % (major, minor, patch or '0')
    if tag:
        release += '-' + tag
    release += '-' + pkgrel
    if package != 'linux' and package.startswith('linux-'):
        release += '-' + package[len('linux-'):]
    return release


def pacman_candidates(text, package='linux'):
    """The kernel `pacman -Si <package>` shows (run with LC_ALL=C), in repository order.

    pacman -S installs from the first repository of pacman.conf that has the package, so the
    first block is the candidate; later blocks (a testing repository further down) follow.
    """
    found, name = [], None
    for line in (text or '').splitlines():
        key, sep, value = line.partition(':')
        if not sep or line[:1].isspace():
            continue
        key, value = key.strip(), value.strip()
        if key == 'Name':
            name = value
        elif key == 'Version' and name == package:
            release = arch_release(package, value)
            if release:
                found.append(_candidate(release, package, value,
                                        upstream=re.match(r'^\d+\.\d+\.\d+', release).group(0)))
    return found


def suse_release(edition, flavour='default'):
    """uname -r of a SUSE kernel package edition: the rpm release without the build counter
    that the build service appends, and the flavour (6.4.0-150600.23.25.1 ->
    6.4.0-150600.23.25-default, Tumbleweed 6.12.1-1.1 -> 6.12.1-1-default, Leap 15.2
    5.3.18-lp152.19.2 -> 5.3.18-lp152.19-default)."""
    match = re.match(r'^(?:\d+:)?(\d+\.\d+(?:\.\d+)?)-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)\.\d+$', edition or '')
    if not match:
        return None
    return '%s-%s-%s' % (match.group(1), match.group(2), flavour)


def zypper_candidates(text, package='kernel-default', arch='x86_64'):
    """Kernels in `zypper --xmlout search --details --match-exact` output, newest first.

    Each <solvable> of kind package, this name and architecture, from a repository (not the
    "(System Packages)" of an installed kernel no repository has any more) is a candidate;
    ``install`` is the zypper spec kernel-default=<edition>.
    """
    start = (text or '').find('<')
    if start < 0:
        return []
    try:
        root = ET.fromstring(text[start:])
    except ET.ParseError as exc:
        raise PlanError('cannot read the output of zypper --xmlout search (%s): run it by hand to '
                        'see what zypper says' % exc)
    flavour = package[len('kernel-'):] if package.startswith('kernel-') else 'default'
    found = []
    for item in root.iter('solvable'):
        repository = item.get('repository') or ''
        if item.get('kind', 'package') != 'package' or item.get('name') != package \
                or item.get('arch') != arch or not repository or repository.startswith('('):
            continue
        release = suse_release(item.get('edition'), flavour)
        if release:
            found.append(_candidate(release, '%s=%s' % (package, item.get('edition')),
                                    item.get('edition'), repository))
    return _newest_first(found)


def repo_candidates(dist, text, package, arch='x86_64'):
    """The candidates of the family's candidate_query() output: [{release, install, version,
    repository}], the one the package manager would install first."""
    if dist == 'RedHat':
        return dnf_candidates(text, package, arch)
    if dist == 'Archlinux':
        return pacman_candidates(text, package)
    if dist == 'Suse':
        return zypper_candidates(text, package, arch)
    raise PlanError('no repository query for %r' % dist)


def match_candidate(version, candidates, arch='x86_64'):
    """The candidate for avic_kernel_version: its uname -r release, that release without the
    architecture (6.11.10-300.fc41) or the package version (6.4.0-150600.23.25.1); else None."""
    for item in candidates or []:
        if version in (item['release'], item['version'], re.sub(r'\.%s$' % re.escape(arch), '', item['release'])):
            return item
    return None


# --- after the package manager ran: which kernel is installed -------------------------------

_MODULE_PATH_RE = re.compile(r'^(?:/usr)?/lib/modules/([^/]+)/vmlinuz$')
_BOOT_IMAGE_RE = re.compile(r'^/boot/vmlinuz-(\d[^/]*)$')
_PVE_PACKAGE_RE = re.compile(r'^(?:proxmox|pve)-kernel-(\d[^ ]*-pve)(?:-signed)?$')


def installed_releases(dist, listing, flavour=None):
    """Kernel releases installed, from what the family's query in vars/<family>.yml printed.

    RedHat/Suse: `rpm -q --qf '[%{FILENAMES}\\n]' ...`; Arch: `pacman -Qlq linux`; these name
    /usr/lib/modules/<release>/vmlinuz or /boot/vmlinuz-<release>. Debian family:
    `dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' ...`, installed ('ii') lines only.
    """
    found = set()
    for line in (listing or '').splitlines():
        line = line.strip()
        if dist in ('debian', 'ubuntu', 'proxmox'):
            parts = line.split()
            if len(parts) < 2 or not parts[1].startswith('ii'):
                continue
            if dist == 'proxmox':
                match = _PVE_PACKAGE_RE.match(parts[0])
                if match:
                    found.add(match.group(1))
            elif parts[0].startswith('linux-image-'):
                release = parts[0][len('linux-image-'):]
                if release[:1].isdigit() and (flavour is None or release_flavour(release) == flavour):
                    found.add(release)
            continue
        match = _MODULE_PATH_RE.match(line) or _BOOT_IMAGE_RE.match(line)
        if match:
            found.add(match.group(1))
    return sorted(found)


# --- Arch: pacman replaces a kernel package in place -----------------------------------------

def arch_fallbacks(pkgbases, target_package):
    """Kernel packages other than ``target_package`` (from /usr/lib/modules/*/pkgbase): what
    still boots after pacman has replaced ``target_package``."""
    return sorted(set(p.strip() for p in pkgbases or [] if p.strip() and p.strip() != target_package))


def ignorepkg_merge(text, names):
    """pacman.conf with ``names`` in IgnorePkg, everything else kept: {content, changed, added}.

    IgnorePkg may appear on several lines of [options] (pacman adds them up) and takes globs;
    a name already covered by any of them is not added again. Missing names go at the end of
    the last active IgnorePkg line of [options] (before an inline comment), else on a new line
    after the commented-out default (``#IgnorePkg   =``), else right after ``[options]``.
    """
    lines = (text or '').splitlines(True)
    section, options_at, active, commented, present = None, None, [], None, []
    for index, line in enumerate(lines):
        stripped = line.strip()
        header = re.match(r'^\[([^\]]+)\]', stripped)
        if header:
            section = header.group(1).strip()
            if section == 'options' and options_at is None:
                options_at = index
            continue
        if section != 'options':
            continue
        body = stripped.split('#', 1)[0].strip()
        match = re.match(r'^IgnorePkg\s*=(.*)$', body)
        if match:
            active.append(index)
            present.extend(match.group(1).split())
        elif commented is None and re.match(r'^#\s*IgnorePkg\s*=', stripped):
            commented = index
    if options_at is None:
        raise PlanError('/etc/pacman.conf has no [options] section: pacman would not read an '
                        'IgnorePkg there; fix the file (see pacman.conf(5)) or set avic_kernel_pin: false')
    added = [n for n in names if not any(fnmatch.fnmatchcase(n, pattern) for pattern in present)]
    added = [n for i, n in enumerate(added) if n not in added[:i]]
    if not added:
        return {'content': text, 'changed': False, 'added': []}
    if active:
        index = active[-1]
        line = lines[index]
        newline = '\n' if line.endswith('\n') else ''
        body = line[:len(line) - len(newline)]
        code, hash_, comment = body.partition('#')
        kept = code.rstrip()
        tail = (code[len(kept):] or ' ') + hash_ + comment if hash_ else ''
        lines[index] = '%s %s%s%s' % (kept, ' '.join(added), tail, newline)
    else:
        after = commented if commented is not None else options_at
        if not lines[after].endswith('\n'):
            lines[after] += '\n'
        lines.insert(after + 1, 'IgnorePkg   = %s\n' % ' '.join(added))
    return {'content': ''.join(lines), 'changed': True, 'added': added}


# --- the default boot entry --------------------------------------------------------------

def os_release_values(text):
    """KEY=value pairs of an os-release file (quotes removed, comments skipped)."""
    values = {}
    for line in (text or '').splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        key, sep, value = line.partition('=')
        if sep:
            values[key.strip()] = value.strip().strip('"\'')
    return values


def grub_distributor(default_grub_text):
    """GRUB_DISTRIBUTOR of /etc/default/grub when it is a literal string; None when unset, empty,
    or computed by the shell (Debian's `lsb_release -i -s`), where the distribution default applies."""
    value = None
    for line in (default_grub_text or '').splitlines():
        match = re.match(r'^\s*GRUB_DISTRIBUTOR=(.*)$', line)
        if match:
            value = match.group(1).strip()
    if value is None:
        return None
    if value[:1] in ('"', "'") and value[-1:] == value[:1]:
        value = value[1:-1]
    if not value or any(c in value for c in '`$'):
        return None
    return value


def grub_os_name(dist, os_release=None, distributor=None):
    """The OS name grub-mkconfig's 10_linux puts in menu titles, per distribution.

    Upstream: '<GRUB_DISTRIBUTOR> GNU/Linux'; Debian patches Ubuntu to 'Ubuntu'; Arch builds
    10_linux with 'GNU/Linux' replaced by 'Linux' (GRUB_DISTRIBUTOR="Arch": 'Arch Linux');
    openSUSE drops ' GNU/Linux' and, with GRUB_DISTRIBUTOR empty, takes NAME and VERSION of
    os-release ('openSUSE Leap 15.6', 'openSUSE Tumbleweed', which has no VERSION).
    """
    os_release = os_release or {}
    if dist == 'debian':
        return '%s GNU/Linux' % (distributor or 'Debian')
    if dist == 'ubuntu':
        name = distributor or 'Ubuntu'
        return name if name in ('Ubuntu', 'Kubuntu') else '%s GNU/Linux' % name
    if dist == 'Archlinux':
        return '%s Linux' % (distributor or 'Arch')
    if dist == 'Suse':
        if distributor:
            return distributor
        name, version = os_release.get('NAME'), os_release.get('VERSION')
        if name:
            return '%s %s' % (name, version) if version else name
        return 'openSUSE'
    return '%s GNU/Linux' % distributor if distributor else 'GNU/Linux'


def default_entry(dist, boot_loader, release, os_name=None, image=None):
    """How ``release`` becomes the default boot entry: {kind, entry, needs_saved_default} or None.

    ``grub``: the saved entry is the menu path 'Advanced options for OS>OS, with Linux V', where V
    is the kernel image name after 'vmlinuz-' (the release; on Arch the package name, since
    /boot/vmlinuz-linux gives 'Arch Linux, with Linux linux'); it needs GRUB_DEFAULT=saved.
    ``grubby`` (Fedora/RHEL) names the kernel image. Proxmox's `proxmox-boot-tool kernel pin`
    already selects it. The tools (grub-set-default, grub2-set-default, grubby) are in
    roles/kernel/vars/<family>.yml.
    """
    if not release or dist == 'proxmox' or boot_loader not in ('grub', 'grubby'):
        return None
    if dist == 'RedHat':
        return {'kind': 'grubby', 'entry': '/boot/vmlinuz-%s' % release, 'needs_saved_default': False}
    name = os_name or grub_os_name(dist)
    version = image if (dist == 'Archlinux' and image) else release
    return {'kind': 'grub', 'entry': 'Advanced options for %s>%s, with Linux %s' % (name, name, version),
            'needs_saved_default': True}


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
         boot_loader=None, os_name=None, arch_kernels=None, candidates=None, arch='x86_64'):
    """The whole decision: {dist, packages, install, target, pin, default_entry, validation, action}.

    ``latest`` with ``available`` (Debian, Ubuntu: installable releases of the flavour) targets
    the newest. ``candidates`` (Fedora/RHEL, Arch, openSUSE: repo_candidates() of the
    repository query) give ``latest`` the first candidate and ``version`` the matching one, so
    the rules run on the exact kernel before anything is installed. Without either, ``latest``
    has no target until the package manager has installed the newest and resolve() reads it
    back (Proxmox). ``arch_kernels``: the pkgbase names of /usr/lib/modules.
    """
    dist = distro(family, os_id, proxmox)
    names = packages(dist, mode, version, running, flavour)
    chosen = None
    if candidates is not None and mode != 'keep':
        available = [item['release'] for item in candidates]
        chosen = candidates[0] if mode == 'latest' and candidates else \
            match_candidate(version, candidates, arch) if mode == 'version' else None
        if mode == 'latest' and not candidates:
            raise PlanError('avic_kernel_mode latest: the configured repositories offer no %s package%s, '
                            'so there is no kernel to check or install; check the repositories (%s)'
                            % (names[0], '' if dist == 'Archlinux' else ' for %s' % arch,
                               REPO_HINTS.get(dist, 'the package manager')))
    if mode == 'keep':
        target = running
    elif mode == 'version':
        target = chosen['release'] if chosen else check_version_string(version)
    else:
        target = chosen['release'] if chosen else (newest(available or []) or None)
    validation = validate(target, minimum, allow_old, refuse_known_issues,
                          (chosen or {}).get('upstream')) if target else \
        {'ok': True, 'refusals': [], 'warnings': [], 'findings': []}
    if mode == 'version' and available is not None and target not in available:
        validation['ok'] = False
        validation['refusals'].append(
            'kernel %s is not available from the configured repositories (available: %s)'
            % (target, ', '.join(sorted(available)[-5:]) or 'none'))
    if dist == 'Archlinux' and mode == 'latest' and arch_kernels is not None \
            and not arch_fallbacks(arch_kernels, names[0]):
        validation['ok'] = False
        validation['refusals'].append(
            'pacman replaces the %s package in place, so after the upgrade no other kernel would '
            'be left to boot: install a second kernel package as a fallback first (for example '
            'linux-lts, and a boot entry for it), or use avic_kernel_mode: keep' % names[0])
    return {'dist': dist, 'packages': names, 'target': target,
            'install': install_spec(dist, mode, names, target, chosen),
            'candidate': chosen,
            'pin': pin(dist, names, target),
            'default_entry': default_entry(dist, boot_loader, target, os_name, names[0])
            if mode != 'keep' else None,
            'validation': validation,
            'action': 'pin' if mode == 'keep' else 'install'}


def resolve(selected, listing, minimum='5.6', allow_old=False, refuse_known_issues=False):
    """The plan after the package manager ran, from what the family's installed-kernel query printed.

    Where the target was validated before installing (Fedora/RHEL, Arch, openSUSE), this is a
    consistency check: that exact kernel must now be installed, else PlanError names what is.
    Where it was not known (``latest`` on Proxmox, or a Debian flavour apt offered no versioned
    package of), the newest installed kernel becomes the target and the rules run on it. Raises
    PlanError when the rules refuse that kernel (it stays installed, next to the others;
    nothing is removed) and when none can be found.
    """
    dist = selected['dist']
    releases = installed_releases(dist, listing, selected.get('flavour') if dist in ('debian', 'ubuntu')
                                  else None)
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
        raise PlanError('avic_kernel_mode latest: no installed kernel of %s was found after the '
                        'package manager ran, so there is nothing to pin or boot; check that the '
                        'package installs a kernel on this host' % ', '.join(selected['packages']))
    validation = validate(target, minimum, allow_old, refuse_known_issues)
    if validation['refusals']:
        raise PlanError('the newest installed kernel %s: %s' % (target, ' '.join(validation['refusals'])))
    result = dict(selected)
    result.update(target=target, pin=pin(dist, selected['packages'], target),
                  default_entry=default_entry(dist, selected.get('boot_loader'), target,
                                              selected.get('grub_os'), selected['packages'][0]),
                  warnings_rules=validation['warnings'])
    return result


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
            'available': None, 'install': install_spec(dist, 'keep', names), 'candidate': None,
            'pin': pin(dist, names, running), 'default_entry': None,
            'warnings_rules': validation['warnings'], 'os': osr, 'flavour': None}
