#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_kernel_select
short_description: Choose the kernel package to install or pin for AVIC, and check it against the rules
version_added: 0.1.0
description:
  - Reads the running kernel, the distribution, the boot loader and, for O(mode=latest) and
    O(mode=version), the kernel packages the configured repositories offer, and returns the plan of
    the C(vfio.avic.kernel) role; the exact package to install, the packages to pin, the pin method,
    the default boot entry and the validation of the target kernel against the AVIC kernel rules.
  - Read-only, also in check mode. Fails with a clear message, before anything is installed, on an
    unknown version string, a kernel below O(minimum) (unless O(allow_old)), a kernel with a known
    AVIC issue when O(refuse_known_issues), or a version the repositories do not have.
author:
  - vfio.avic maintainers (@vfio-avic)
options:
  mode:
    description:
      - C(keep) pins the running kernel, C(latest) the newest kernel of the configured repositories,
        C(version) the kernel given in O(version).
    type: str
    choices: [keep, latest, version]
    default: keep
  version:
    description:
      - The kernel for O(mode=version), as C(uname -r) prints it (C(6.1.0-26-amd64)).
    type: str
  flavour:
    description:
      - The Debian/Ubuntu kernel flavour (C(amd64), C(cloud-amd64), C(generic)); default by distribution.
    type: str
  minimum:
    description:
      - The lowest kernel version accepted.
    type: str
    default: '5.6'
  allow_old:
    description:
      - Accept a kernel below O(minimum).
    type: bool
    default: false
  refuse_known_issues:
    description:
      - Refuse kernels with known AVIC issues instead of warning.
    type: bool
    default: false
  pin:
    description:
      - Compute the pin in full. On Arch that is the C(/etc/pacman.conf) with the kernel merged into
        C(IgnorePkg) (C(merge) of RV(pin)), read here; a file without C([options]) fails unless V(false).
    type: bool
    default: true
  resolve:
    description:
      - The result of an earlier run of this module, after the package manager ran. The module then
        reads the installed kernels back (C(dpkg-query), C(rpm) or C(pacman -Qlq), read-only) and
        returns that plan again; with its target checked to be installed (Fedora/RHEL, Arch,
        openSUSE), or, where no target was known before installing (Proxmox, a Debian flavour
        without versioned packages), with the newest installed kernel as target, checked against
        the rules. O(mode), O(version) and O(flavour) are not used then.
    type: dict
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
    description: Changes nothing.
notes:
  - The candidate kernel comes from read-only queries, parsed by the collection's own rules
    (C(module_utils/parse/packages)); Debian and Ubuntu C(apt-cache pkgnames), then C(apt-cache policy)
    for an install candidate (names only provided by other packages do not count); Fedora/RHEL
    C(dnf repoquery --available) (the newest only for O(mode=latest)); Arch C(pacman -Si linux), the
    version of the first repository in C(pacman.conf) order, from the sync database as last refreshed
    (the module never syncs it); openSUSE C(zypper --xmlout search --details --match-exact kernel-default),
    the newest edition of any enabled repository.
  - Proxmox VE (C(proxmox-default-kernel)) and a Debian/Ubuntu flavour without versioned packages
    have no target before installing; the role reads the installed kernel back and checks it then.
  - On Arch, O(mode=latest) is refused unless a second kernel package is installed, because pacman
    replaces the kernel package in place; O(mode=version) is refused (one version per package).
'''

EXAMPLES = r'''
- name: Plan a pin of the running kernel
  vfio.avic.avic_kernel_select:
    mode: keep
  register: kernel_plan

- name: Plan the newest cloud kernel
  vfio.avic.avic_kernel_select:
    mode: latest
    flavour: cloud-amd64
'''

RETURN = r'''
running:
  description: The running kernel release.
  returned: always
  type: str
target:
  description:
    - The kernel release (as C(uname -r) prints it) the plan installs or pins, already checked
      against the rules.
    - Null for O(mode=latest) on Proxmox, or on Debian/Ubuntu when apt offers no versioned package of
      the flavour; the role reads the installed kernel back after installing.
  returned: always
  type: str
install:
  description:
    - C(names), the package specs to install (exact where the target is known, for example
      C(kernel-6.11.10-300.fc41), C(kernel-default=6.4.0-150600.23.25.1), C(linux-image-6.1.0-27-amd64);
      C(linux) on Arch, whose sync database holds one version), and C(state) (C(present) or C(latest)).
  returned: always
  type: dict
candidate:
  description:
    - The repository candidate chosen (C(release), C(install), C(version), C(repository)) on Fedora/RHEL,
      Arch and openSUSE for O(mode=latest) and O(mode=version); null otherwise.
  returned: always
  type: dict
candidates:
  description: Every candidate the repository query returned (Fedora/RHEL, Arch, openSUSE), preferred first; null otherwise.
  returned: always
  type: list
  elements: dict
query:
  description: The repository query that was run (Fedora/RHEL, Arch, openSUSE), or null.
  returned: always
  type: list
  elements: str
dist:
  description: C(debian), C(ubuntu), C(proxmox), C(RedHat), C(Archlinux) or C(Suse).
  returned: always
  type: str
packages:
  description: Packages to install (latest, version) or pin (keep).
  returned: always
  type: list
  elements: str
installed:
  description: Kernel releases installed from packages (Debian and Ubuntu).
  returned: always
  type: list
  elements: str
held:
  description:
    - The kernel packages on hold, where the plan was made from the C(vfio_avic) fact's dpkg
      database (the kernel role's O(mode=keep) on Debian); always null from this module.
  returned: always
  type: list
  elements: str
available:
  description:
    - Kernel releases of exactly the flavour that apt can install (Debian and Ubuntu), the releases of
      the repository candidates (Fedora/RHEL, Arch, openSUSE, O(mode=latest) and O(mode=version)), or null.
  returned: always
  type: list
  elements: str
pin:
  description:
    - C(method), C(packages), C(file) (pacman.conf on Arch), C(ignore) (the IgnorePkg names on
      Arch) and C(command) (null where the method is a file, or for Proxmox before the target is known).
    - C(merge) on Arch with O(pin); C(content) (pacman.conf with the names in IgnorePkg, every other
      line kept), C(changed) and C(added); null elsewhere.
  returned: always
  type: dict
default_entry:
  description:
    - C(kind) (C(grub) or C(grubby)), C(entry) (the GRUB menu path, or the kernel image for grubby)
      and C(needs_saved_default), to make the target the default boot entry; null where the boot
      loader needs nothing (Proxmox, systemd-boot) or the target is not known yet.
  returned: always
  type: dict
boot_loader:
  description: The boot loader kind found (C(grub), C(systemd-boot), C(proxmox-boot-tool), C(unknown)).
  returned: always
  type: str
grub_os:
  description: The distribution name GRUB's menu titles carry (C(Debian GNU/Linux), C(Arch Linux), C(openSUSE Leap 15.6)).
  returned: always
  type: str
os:
  description: The distribution as C(vfio.avic.avic_facts) reports it (C(id), C(id_like), C(version_id), C(codename), C(family), C(proxmox)).
  returned: always
  type: dict
flavour:
  description: The Debian/Ubuntu kernel flavour used (O(flavour) or the distribution default), null elsewhere.
  returned: always
  type: str
reboot_required:
  description: The target is known and is not the running kernel; the host must boot it.
  returned: always
  type: bool
warnings_rules:
  description: Warnings of the kernel rules for the target.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils import gather
from ansible_collections.vfio.avic.plugins.module_utils.boot import target as boot_target
from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils.parse import os_release
from ansible_collections.vfio.avic.plugins.module_utils.parse import packages as pkg_output
from ansible_collections.vfio.avic.plugins.module_utils.plan import default_entry
from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_pin
from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_select


def debian_kernels(module, dist, flavour):
    """(installed releases, available releases) of linux-image-<release> packages of the flavour.

    Available means: named by `apt-cache pkgnames`, of exactly this flavour, and with an install
    candidate in `apt-cache policy` (pkgnames also lists names that only a Provides mentions).
    """
    rc, out, err = module.run_command(['apt-cache', 'pkgnames', 'linux-image-'])
    if rc != 0:
        module.fail_json(msg='apt-cache pkgnames failed: %s' % (err or out).strip())
    available = pkg_output.flavour_releases(out.splitlines(), flavour)
    if available:
        rc, out, err = module.run_command(['apt-cache', 'policy'] + ['linux-image-%s' % r for r in available],
                                          environ_update={'LC_ALL': 'C'})
        if rc != 0:
            module.fail_json(msg='apt-cache policy failed: %s' % (err or out).strip())
        available = pkg_output.installable(available, out)
    return installed_kernels(module, dist), available


def installed_kernels(module, dist, flavour=None):
    """The installed kernel releases, from the family's read-only query (parse/packages)."""
    argv = pkg_output.INSTALLED_QUERIES[dist]
    rc, out, err = module.run_command(argv, environ_update={'LC_ALL': 'C'})
    if rc not in pkg_output.INSTALLED_QUERY_OK:
        module.fail_json(msg='`%s` failed (rc %d): %s' % (' '.join(argv), rc, (err or out).strip()), changed=False)
    return pkg_output.installed_releases(dist, out, flavour)


def pacman_pin(reader, plan, params):
    """The pacman.conf IgnorePkg merge of an Arch pin: {content, changed, added}, or None."""
    if not params['pin'] or plan['pin']['method'] != 'pacman-ignorepkg':
        return None
    text = reader.read(plan['pin']['file'])
    if text is None:
        raise kernel_pin.PinError('%s cannot be read: pacman reads IgnorePkg there; restore it (see '
                                  'pacman.conf(5)) or set pin: false' % plan['pin']['file'], 'pin')
    return kernel_pin.ignorepkg_merge(text, plan['pin']['ignore'])


def resolve(module, params):
    """The plan given in ``resolve`` after the package manager ran (kernel_select.resolve())."""
    selected = params['resolve']
    if not isinstance(selected.get('dist'), str) or selected['dist'] not in pkg_output.INSTALLED_QUERIES \
            or not selected.get('packages'):
        module.fail_json(msg='resolve must be the result of an earlier avic_kernel_select run (with dist '
                             'and packages), got keys %s' % ', '.join(sorted(selected)))
    argv = pkg_output.INSTALLED_QUERIES[selected['dist']]
    rc, listing, err = module.run_command(argv, environ_update={'LC_ALL': 'C'})
    if rc not in pkg_output.INSTALLED_QUERY_OK:
        module.fail_json(msg='`%s` failed (rc %d): %s' % (' '.join(argv), rc, (err or listing).strip()))
    try:
        result = kernel_select.resolve(dict(selected), listing, params['minimum'], params['allow_old'],
                                       params['refuse_known_issues'])
    except kernel_select.PlanError as exc:
        module.fail_json(msg=str(exc), field=exc.field, changed=False)
    for key in ('changed', 'failed', 'invocation', 'warnings', 'deprecations'):
        result.pop(key, None)
    return dict(result, changed=False)


def repo_kernels(module, dist, mode, arch):
    """(query argv, candidates) of the family's kernel package in the configured repositories.

    Read-only: dnf repoquery, pacman -Si (the sync database as last refreshed; nothing here
    syncs it) or zypper search; run in check mode too.
    """
    package = kernel_select.META_PACKAGES[dist]
    argv = pkg_output.candidate_query(dist, mode, package)
    tool = module.get_bin_path(argv[0])
    if not tool:
        module.fail_json(msg='%s not found: mode %s reads the kernel the repositories offer '
                             'with `%s` before installing; install %s or use mode keep'
                             % (argv[0], mode, ' '.join(argv), argv[0]), changed=False)
    rc, out, err = module.run_command([tool] + argv[1:], environ_update={'LC_ALL': 'C', 'LANG': 'C'})
    # pacman -Si exits 1 for a package no repository has, zypper search 104 when nothing
    # matches: both mean "no candidate", which the plan reports
    missing = (dist == 'Archlinux' and rc == 1 and 'was not found' in err) or (dist == 'Suse' and rc == 104)
    if rc != 0 and not missing:
        module.fail_json(msg='`%s` failed (rc %d): %s' % (' '.join(argv), rc, (err or out).strip()),
                         changed=False)
    return argv, pkg_output.repo_candidates(dist, '' if dist == 'Archlinux' and missing else out,
                                            package, arch)


def arch_kernels(reader):
    """The kernel packages installed on Arch, from /usr/lib/modules/<release>/pkgbase."""
    names = []
    for release in reader.listdir('/usr/lib/modules'):
        text = reader.read('/usr/lib/modules/%s/pkgbase' % release)
        if text and text.strip():
            names.append(text.strip())
    return names


def run(module):
    params = module.params
    reader = HostFiles()
    osr = gather.os_facts(reader)
    running, machine = os.uname()[2], os.uname()[4]
    if not osr['family']:
        module.fail_json(msg='unsupported distribution %r: the kernel role knows Debian, Ubuntu, Proxmox, '
                             'Fedora/RHEL, Arch and openSUSE' % osr['id'])
    boot_loader = boot_target.boot_loader(reader)['kind']
    try:
        dist = kernel_select.distro(osr['family'], osr['id'], osr['proxmox'])
        flavour = params['flavour'] or kernel_select.DEFAULT_FLAVOUR.get(dist)
        installed, available, query, candidates = [], None, None, None
        if dist in ('debian', 'ubuntu'):
            installed, available = debian_kernels(module, dist, flavour)
        if params['mode'] == 'version':
            kernel_select.check_version_string(params['version'])
            kernel_select.packages(dist, 'version', params['version'], running, flavour)
        if params['mode'] != 'keep' and dist in pkg_output.CANDIDATE_TOOLS:
            query, candidates = repo_kernels(module, dist, params['mode'], machine)
            available = [item['release'] for item in candidates]
        os_name = default_entry.grub_os_name(
            dist, os_release.parse(os_release.read(reader.read)),
            default_entry.grub_distributor(reader.read('/etc/default/grub')))
        plan = kernel_select.plan(
            osr['family'], params['mode'], running, osr['id'], osr['proxmox'], params['version'],
            available, flavour, params['minimum'], params['allow_old'], params['refuse_known_issues'],
            boot_loader, os_name, arch_kernels(reader) if dist == 'Archlinux' else None,
            candidates, machine)
        if plan['validation']['refusals']:
            module.fail_json(msg=' '.join(plan['validation']['refusals']), running=running,
                             target=plan['target'], candidates=candidates, changed=False)
        merge = pacman_pin(reader, plan, params)
    except (kernel_select.PlanError, kernel_pin.PinError, pkg_output.PackageOutputError) as exc:
        module.fail_json(msg=str(exc), field=getattr(exc, 'field', None))
    return dict(kernel_select.selection(plan, running, osr, flavour, installed, None, available,
                                        candidates, query, boot_loader, os_name, merge), changed=False)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type='str', default='keep', choices=['keep', 'latest', 'version']),
            version=dict(type='str'),
            flavour=dict(type='str'),
            minimum=dict(type='str', default='5.6'),
            allow_old=dict(type='bool', default=False),
            refuse_known_issues=dict(type='bool', default=False),
            pin=dict(type='bool', default=True),
            resolve=dict(type='dict'),
        ),
        required_if=[('mode', 'version', ['version'])],
        supports_check_mode=True,
    )
    module.exit_json(**(resolve(module, module.params) if module.params['resolve'] else run(module)))


if __name__ == '__main__':
    main()
