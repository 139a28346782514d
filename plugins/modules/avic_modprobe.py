#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_modprobe
short_description: Manage the kvm_amd options file for AVIC and report conflicting modprobe.d settings
version_added: 0.1.0
description:
  - Writes one managed file under C(/etc/modprobe.d/) with C(options kvm_amd avic=1 npt=1 nested=0)
    and, when asked, C(force_avic=1) and extra options, with a header saying who manages it.
  - Reads every modprobe.d directory in kmod's order and reports the other files that set a
    C(kvm_amd) option to another value, or blacklist C(kvm_amd), and whether they win.
  - With O(comment_conflicts=true) comments those option lines out, after a backup of each file.
  - Only files change; loading the options is the job of a module reload or a reboot.
    RV(reload_required) says whether the running C(kvm_amd) (as C(/sys/module/kvm_amd) shows it)
    must be reloaded to take the options, and RV(reload_differs) which parameters differ.
author:
  - vfio.avic maintainers (@vfio-avic)
extends_documentation_fragment:
  - vfio.avic.root
  - vfio.avic.backup
options:
  path:
    description:
      - The managed file, a C(*.conf) file directly in C(/etc/modprobe.d/). Other directories are
        refused, since C(/run/modprobe.d) is gone at the next boot, C(/lib/modprobe.d) and
        C(/usr/lib/modprobe.d) belong to packages, and kmod reads nothing else.
    type: path
    default: /etc/modprobe.d/vfio-avic-kvm_amd.conf
  avic:
    description:
      - Write C(avic=1). V(false) writes C(avic=0), to turn AVIC off on purpose (kernels from 6.18
        turn it on by default on Zen 4 and later CPUs with x2AVIC).
    type: bool
    default: true
  force_avic:
    description:
      - Add C(force_avic=1) (AVIC on CPUs that hide it in CPUID; unsupported, taints the kernel).
    type: bool
    default: false
  nested:
    description:
      - Set C(nested=1) instead of C(nested=0).
    type: bool
    default: false
  extra_options:
    description:
      - More C(kvm_amd) parameters, name to value (C(avic_ipi), C(sev), ...).
      - The options this module manages (C(avic), C(npt), C(nested), C(force_avic)) are refused
        here by name, before anything is written; use O(avic), O(nested) and O(force_avic).
    type: dict
    default: {}
  comment_conflicts:
    description:
      - Comment out conflicting C(kvm_amd) option lines in other files (each file is backed up).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what would change and the diff; writes nothing.
  diff_mode:
    support: full
    description: Shows the managed file and each commented-out file before and after.
notes:
  - Supports check mode and diff mode.
seealso:
  - module: vfio.avic.avic_facts
  - module: vfio.avic.avic_cmdline
'''

EXAMPLES = r'''
- name: kvm_amd with AVIC, nested off
  vfio.avic.avic_modprobe:

- name: AVIC forced on a Ryzen that hides it, and the old kvm.conf settings commented out
  vfio.avic.avic_modprobe:
    force_avic: true
    comment_conflicts: true
'''

RETURN = r'''
path:
  description: The managed file.
  returned: always
  type: str
options:
  description: The options written, name to value.
  returned: always
  type: dict
  sample: {avic: '1', npt: '1', nested: '0'}
conflicts:
  description: Other modprobe.d settings that differ from the managed file (after any commenting out).
  returned: always
  type: list
  elements: dict
  contains:
    path: {description: The file, type: str, returned: always}
    option: {description: 'The option, or null for a blacklist line', type: str, returned: always}
    value: {description: Its value there, type: str, returned: always}
    wins: {description: Whether it overrides the managed file, type: bool, returned: always}
    message: {description: One line for the report, type: str, returned: always}
commented:
  description: Files whose conflicting lines were commented out (or would be, in check mode).
  returned: always
  type: list
  elements: str
backups:
  description: Backup files made before changing a file.
  returned: always
  type: list
  elements: str
reload_required:
  description: >-
    Whether C(kvm_amd) must be reloaded (or the host rebooted) before it runs the options written:
    it runs other values, or it is not loaded (it takes them when it loads). The module never
    reloads it; in a container the module belongs to the container host.
  returned: always
  type: bool
loaded:
  description: Whether C(kvm_amd) is loaded (C(/sys/module/kvm_amd) exists).
  returned: always
  type: bool
reload_differs:
  description: The parameters whose running value differs from the one written, name to C(configured) and C(running).
  returned: always
  type: dict
  sample: {avic: {configured: '1', running: N}}
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils.parse import modprobe as modprobe_parse
from ansible_collections.vfio.avic.plugins.module_utils.plan import modprobe as modprobe_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError
from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles


def run(module):
    params = module.params
    files = HostFiles(module, params['root'])
    path = params['path']
    try:
        modprobe_plan.check_managed_path(path)
    except PlanError as exc:
        module.fail_json(msg=str(exc))  # the field is this module's option
    try:
        options = modprobe_plan.wanted_options(params['force_avic'], params['nested'],
                                               params['extra_options'], params['avic'])
    except PlanError as exc:
        module.fail_json(msg=str(exc))  # the fields are this module's options

    changes = []
    files.write(params['path'], modprobe_plan.modprobe_text(options), changes)

    def ordered():
        by_dir = dict((d, files.listdir(d, files_only=True)) for d in modprobe_parse.MODPROBE_DIRS)
        name = os.path.basename(path)
        if name not in by_dir[modprobe_parse.MODPROBE_DIRS[0]]:
            by_dir[modprobe_parse.MODPROBE_DIRS[0]] = by_dir[modprobe_parse.MODPROBE_DIRS[0]] + [name]
        return [(p, files.read(p) or '') for p in modprobe_parse.modprobe_file_order(by_dir)]

    found = modprobe_plan.conflicts(ordered(), params['path'], options)
    commented = []
    if params['comment_conflicts']:
        keys = set(c['option'] for c in found if c['option'])
        for path in sorted(set(c['path'] for c in found if c['option'])):
            if not path.startswith('/etc/'):
                continue
            new = modprobe_plan.comment_conflicts(files.read(path) or '', keys)
            if files.write(path, new, changes):
                commented.append(path)
        if commented and not module.check_mode:
            found = modprobe_plan.conflicts(ordered(), params['path'], options)
        elif commented:
            found = [c for c in found if c['path'] not in commented or not c['option']]
    result = modprobe_plan.outcome(params['path'], options, found,
                                   modprobe_parse.loaded_module(files), changes, commented,
                                   files.backups)
    if module._diff:
        result['diff'] = [c['diff'] for c in changes]
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', default='/etc/modprobe.d/vfio-avic-kvm_amd.conf'),
            avic=dict(type='bool', default=True),
            force_avic=dict(type='bool', default=False),
            nested=dict(type='bool', default=False),
            extra_options=dict(type='dict', default={}),
            comment_conflicts=dict(type='bool', default=False),
            backup=dict(type='bool', default=True),
            root=dict(type='path', default='/'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == '__main__':
    main()
