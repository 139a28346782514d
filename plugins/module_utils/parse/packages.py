# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the package tools print about kernel packages (stdlib only): apt-cache names and
policy, the read-only repository queries of dnf, pacman and zypper with their parsers
(candidates: the kernel the repositories offer, before anything is installed), and the
installed-kernel listings of dpkg-query, rpm and pacman (after the package manager ran).

Every parser returns uname -r releases, ordered with release_key()."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import xml.etree.ElementTree as ET

from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules


class PackageOutputError(ValueError):
    """Output of a package tool that cannot be read (the message says which tool)."""


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


def candidate(release, install, version, repository=None, upstream=None):
    """One repository candidate: {release, install, version, repository, upstream}.

    ``upstream``: the upstream kernel version where the packaging is known to carry it
    (Fedora and Arch build upstream stable releases), so that the patch-level rules apply; None
    where the version is a base the distribution backports into (RHEL, SLE, openSUSE Leap)."""
    return {'release': release, 'install': install, 'version': version, 'repository': repository,
            'upstream': upstream}


def release_key(release):
    """The sort key of a uname -r release: (version tuple, the numbers of its suffix).
    Raises kernel_rules.KernelReleaseError for a string that is not a release."""
    parsed = kernel_rules.parse_release(release)
    return parsed['version'], tuple(int(n) for n in re.findall(r'\d+', parsed['suffix']))


def newest_first(candidates):
    """Candidates sorted newest first, one per release; unparsable releases dropped."""
    usable = []
    for item in candidates:
        try:
            usable.append((release_key(item['release']), item))
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
        found.append(candidate('%s-%s.%s' % (version, release, pkg_arch), '%s-%s' % (name, evr), evr,
                               upstream=version if re.search(r'\.fc\d+$', release) else None))
    return newest_first(found)


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
                found.append(candidate(release, package, value,
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
        raise PackageOutputError('cannot read the output of zypper --xmlout search (%s): run it by hand to '
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
            found.append(candidate(release, '%s=%s' % (package, item.get('edition')),
                                   item.get('edition'), repository))
    return newest_first(found)


def repo_candidates(dist, text, package, arch='x86_64'):
    """The candidates of the family's candidate_query() output: [{release, install, version,
    repository}], the one the package manager would install first."""
    if dist == 'RedHat':
        return dnf_candidates(text, package, arch)
    if dist == 'Archlinux':
        return pacman_candidates(text, package)
    if dist == 'Suse':
        return zypper_candidates(text, package, arch)
    raise ValueError('no repository query for %r' % dist)


# The read-only queries that list the installed kernels, per packaging flavour; their output is
# what installed_releases() reads. dpkg-query and rpm exit 1 when one of the names is not
# installed and list the others. Debian family: 'ii' lines count. rpm: kernel-core owns
# /lib/modules/<release>/vmlinuz (Fedora, EL 8+), kernel owns /boot/vmlinuz-<release> (EL 7);
# kernel-default owns /boot/vmlinuz-<release> (Leap) or /usr/lib/modules/<release>/vmlinuz
# (Tumbleweed). Arch: the linux package owns /usr/lib/modules/<release>/vmlinuz.
_DPKG_KERNELS = ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Abbrev}\\n', 'linux-image-*',
                 'proxmox-kernel-*', 'pve-kernel-*']
INSTALLED_QUERIES = {
    'debian': _DPKG_KERNELS, 'ubuntu': _DPKG_KERNELS, 'proxmox': _DPKG_KERNELS,
    'RedHat': ['rpm', '-q', '--qf', '[%{FILENAMES}\\n]', 'kernel-core', 'kernel'],
    'Suse': ['rpm', '-q', '--qf', '[%{FILENAMES}\\n]', 'kernel-default'],
    'Archlinux': ['pacman', '-Qlq', 'linux'],
}
INSTALLED_QUERY_OK = (0, 1)


_MODULE_PATH_RE = re.compile(r'^(?:/usr)?/lib/modules/([^/]+)/vmlinuz$')


_BOOT_IMAGE_RE = re.compile(r'^/boot/vmlinuz-(\d[^/]*)$')


_PVE_PACKAGE_RE = re.compile(r'^(?:proxmox|pve)-kernel-(\d[^ ]*-pve)(?:-signed)?$')


def installed_releases(dist, listing, flavour=None):
    """Kernel releases installed, from what the family's query (INSTALLED_QUERIES) printed.

    The queries are INSTALLED_QUERIES: rpm and pacman name /usr/lib/modules/<release>/vmlinuz or
    /boot/vmlinuz-<release>; of dpkg-query's lines the installed ('ii') ones count.
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
