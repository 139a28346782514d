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
  - Reads the running kernel, the distribution, the boot loader and, on Debian and Ubuntu, the kernel
    packages installed and available from the configured repositories, and returns the plan of the
    C(vfio.avic.kernel) role; the packages to install or pin, the pin method, the default boot entry
    command and the validation against the AVIC kernel rules.
  - Read-only. Fails with a clear message, before anything is installed, on an unknown version string,
    a version below the minimum, or a version the repositories do not have.
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
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
    description: Changes nothing.
notes:
  - Availability is checked with C(apt-cache) on Debian and Ubuntu; on other families the package
    manager checks it when the role installs.
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
  description: The kernel release the plan installs or pins (null when the package manager decides).
  returned: always
  type: str
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
available:
  description: Kernel releases of the flavour the repositories offer (Debian and Ubuntu), or null.
  returned: always
  type: list
  elements: str
pin:
  description: C(method), C(packages), C(file), C(content), C(command).
  returned: always
  type: dict
default_entry:
  description: C(command) and C(needs_saved_default) to make the target the default boot entry, or null.
  returned: always
  type: dict
warnings_rules:
  description: Warnings of the kernel rules for the target.
  returned: always
  type: list
  elements: str
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils import avic_kernelplan
from ansible_collections.vfio.avic.plugins.module_utils.avic_gather import Reader, _boot_loader, _os_release


def debian_kernels(module, flavour):
    """(installed releases, available releases) of linux-image-<release> packages of the flavour."""
    suffix = '-' + flavour
    rc, out, err = module.run_command(['apt-cache', 'pkgnames', 'linux-image-'])
    if rc != 0:
        module.fail_json(msg='apt-cache pkgnames failed: %s' % (err or out).strip())
    pattern = re.compile(r'^linux-image-(\d[^ ]*%s)$' % re.escape(suffix))
    available = sorted(set(m.group(1) for m in (pattern.match(n.strip()) for n in out.splitlines()) if m))
    rc, out, _err = module.run_command(['dpkg-query', '-W', '-f', '${Package} ${db:Status-Abbrev}\\n',
                                        'linux-image-*'])
    installed = []
    for line in out.splitlines() if rc == 0 else []:
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith('ii'):
            match = re.match(r'^linux-image-(\d.*)$', parts[0])
            if match:
                installed.append(match.group(1))
    return sorted(installed), available


def run(module):
    params = module.params
    reader = Reader('/')
    osr = _os_release(reader)
    running = os.uname()[2]
    if not osr['family']:
        module.fail_json(msg='unsupported distribution %r: the kernel role knows Debian, Ubuntu, Proxmox, '
                             'Fedora/RHEL, Arch and openSUSE' % osr['id'])
    try:
        dist = avic_kernelplan.distro(osr['family'], osr['id'], osr['proxmox'])
        flavour = params['flavour'] or avic_kernelplan.DEFAULT_FLAVOUR.get(dist)
        installed, available = [], None
        if dist in ('debian', 'ubuntu'):
            installed, available = debian_kernels(module, flavour)
        if params['mode'] == 'version':
            avic_kernelplan.check_version_string(params['version'])
        plan = avic_kernelplan.plan(
            osr['family'], params['mode'], running, osr['id'], osr['proxmox'], params['version'],
            available, flavour, params['minimum'], params['allow_old'], params['refuse_known_issues'],
            _boot_loader(reader)['kind'])
    except avic_kernelplan.PlanError as exc:
        module.fail_json(msg=str(exc))
    if params['mode'] == 'latest' and available:
        plan['target'] = avic_kernelplan.newest(available)
        plan['validation'] = avic_kernelplan.validate(plan['target'], params['minimum'], params['allow_old'],
                                                      params['refuse_known_issues'])
        plan['default_entry'] = avic_kernelplan.default_entry(dist, _boot_loader(reader)['kind'],
                                                              plan['target'])
    if plan['validation']['refusals']:
        module.fail_json(msg=' '.join(plan['validation']['refusals']), running=running,
                         target=plan['target'], changed=False)
    return dict(changed=False, running=running, target=plan['target'], dist=plan['dist'],
                packages=plan['packages'], installed=installed, available=available, pin=plan['pin'],
                default_entry=plan['default_entry'], warnings_rules=plan['validation']['warnings'],
                os=osr, flavour=flavour)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type='str', default='keep', choices=['keep', 'latest', 'version']),
            version=dict(type='str'),
            flavour=dict(type='str'),
            minimum=dict(type='str', default='5.6'),
            allow_old=dict(type='bool', default=False),
            refuse_known_issues=dict(type='bool', default=False),
        ),
        required_if=[('mode', 'version', ['version'])],
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == '__main__':
    main()
