#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_cmdline
short_description: Put the IOMMU arguments on the kernel command line, keeping every other argument
version_added: 0.1.0
description:
  - Makes each argument of O(args) appear once on the configured kernel command line; an argument
    with the same key (C(amd_iommu=off) for C(amd_iommu=on)) is replaced in place, every other
    argument of the user keeps its place.
  - Edits C(GRUB_CMDLINE_LINUX_DEFAULT) in C(/etc/default/grub) for GRUB, C(/etc/kernel/cmdline) for
    systemd-boot, kernel-install and Proxmox, or the boot entries through C(grubby).
  - Backs the file up before a change. Regenerating the boot loader configuration is left to the
    caller (the C(vfio.avic.host) role runs it as a handler); RV(refresh) says what to run.
author:
  - vfio.avic maintainers (@vfio-avic)
options:
  args:
    description:
      - Arguments to ensure, such as C(amd_iommu=on) and C(iommu=pt).
    type: list
    elements: str
    required: true
  remove:
    description:
      - Argument keys to remove (unless also in O(args)), such as C(amd_iommu_intr).
    type: list
    elements: str
    default: []
  target:
    description:
      - Where the command line is configured. C(auto) picks C(kernel_cmdline) on Proxmox and
        systemd-boot hosts, else C(grub) when C(/etc/default/grub) exists, else C(grubby) when it is
        installed, else C(none) (nothing to edit; reported).
    type: str
    choices: [auto, grub, kernel_cmdline, grubby]
    default: auto
  backup:
    description:
      - Back up the file before changing it.
    type: bool
    default: true
  root:
    description:
      - Directory the host's file system is mounted below (tests, images); C(/) for the host itself.
        C(grubby) is only run when this is C(/).
    type: path
    default: /
attributes:
  check_mode:
    support: full
    description: Reports the new command line and the diff; writes nothing.
  diff_mode:
    support: full
    description: Shows the file before and after.
notes:
  - Supports check mode and diff mode.
seealso:
  - module: vfio.avic.avic_modprobe
'''

EXAMPLES = r'''
- name: IOMMU in pass-through mode, next to whatever else the line holds
  vfio.avic.avic_cmdline:
    args: [amd_iommu=on, iommu=pt]
  register: avic_cmdline

- name: Regenerate grub.cfg when it changed
  ansible.builtin.command: update-grub
  when: avic_cmdline is changed and avic_cmdline.target == 'grub'
  changed_when: true
'''

RETURN = r'''
target:
  description: Where the command line was edited (C(grub), C(kernel_cmdline), C(grubby) or C(none)).
  returned: always
  type: str
path:
  description: The file edited, or null for C(grubby) and C(none).
  returned: always
  type: str
before:
  description: The configured command line before (for C(grub), the variable's value).
  returned: always
  type: str
after:
  description: The configured command line after.
  returned: always
  type: str
refresh:
  description: >-
    What makes the change reach the boot loader: C(grub-mkconfig), C(proxmox-boot-tool),
    C(kernel-install) or C(none) (grubby edits the entries itself).
  returned: always
  type: str
backups:
  description: Backup files made before a change.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils import avic_hostplan
from ansible_collections.vfio.avic.plugins.module_utils.avic_files import HostFiles

GRUB = '/etc/default/grub'
KERNEL_CMDLINE = '/etc/kernel/cmdline'


def pick_target(files, module):
    return avic_hostplan.cmdline_target(
        files.exists, files.root == '/' and bool(module.get_bin_path('grubby')))


def run_grubby(module, args, remove):
    grubby = module.get_bin_path('grubby', required=True)
    rc, out, err = module.run_command([grubby, '--info=DEFAULT'])
    if rc != 0:
        module.fail_json(msg='grubby --info=DEFAULT failed: %s' % (err or out).strip())
    before = ''
    for line in out.splitlines():
        if line.startswith('args='):
            before = line[len('args='):].strip().strip('"')
    after = avic_hostplan.edit_cmdline(before, args, remove)
    changed = after.split() != before.split()
    if changed and not module.check_mode:
        add = [a for a in args if a not in before.split()]
        drop = [w for w in before.split() if w not in after.split()]
        command = [grubby, '--update-kernel=ALL']
        if add:
            command.append('--args=%s' % ' '.join(add))
        if drop:
            command.append('--remove-args=%s' % ' '.join(drop))
        rc, out, err = module.run_command(command)
        if rc != 0:
            module.fail_json(msg='grubby failed: %s' % (err or out).strip())
    return changed, before, after


def run(module):
    params = module.params
    files = HostFiles(module, params['root'])
    try:
        args = avic_hostplan.owned_args(params['args'])
    except avic_hostplan.PlanError as exc:
        module.fail_json(msg=str(exc).replace('avic_host_iommu_args / avic_host_cmdline_extra', 'args'))
    remove = [r.partition('=')[0] for r in params['remove']]
    target = params['target']
    if target == 'auto':
        target = pick_target(files, module)
    changes = []
    result = dict(target=target, path=None, before='', after='', refresh='none', backups=[])
    if target == 'none':
        result['msg'] = ('no boot loader configuration found (%s, %s or grubby): the kernel command '
                         'line was not changed' % (GRUB, KERNEL_CMDLINE))
        result['changed'] = False
        return result
    if target == 'grubby':
        changed, before, after = run_grubby(module, args, remove)
        result.update(changed=changed, before=before, after=after)
        if module._diff:
            result['diff'] = {'before': before + '\n', 'after': after + '\n',
                              'before_header': 'grubby DEFAULT args', 'after_header': 'grubby DEFAULT args'}
        return result
    if target == 'grub':
        text = files.read(GRUB)
        if text is None:
            module.fail_json(msg='target=grub but %s does not exist on the host' % GRUB)
        try:
            before = avic_hostplan.grub_value(text)
            new = avic_hostplan.edit_grub_default(text, args, remove)
        except avic_hostplan.PlanError as exc:
            module.fail_json(msg=str(exc))
        after = avic_hostplan.grub_value(new)
        files.write(GRUB, new, changes)
        result.update(path=GRUB, refresh='grub-mkconfig')
    else:
        text = files.read(KERNEL_CMDLINE)
        before = ' '.join((text or '').split())
        after = avic_hostplan.edit_cmdline(before, args, remove)
        files.write(KERNEL_CMDLINE, after + '\n', changes)
        result.update(path=KERNEL_CMDLINE,
                      refresh='proxmox-boot-tool' if files.exists('/etc/kernel/proxmox-boot-uuids')
                      else 'kernel-install')
    result.update(changed=bool(changes), before=before, after=after, backups=files.backups)
    if module._diff and changes:
        result['diff'] = changes[0]['diff']
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            args=dict(type='list', elements='str', required=True),
            remove=dict(type='list', elements='str', default=[]),
            target=dict(type='str', default='auto', choices=['auto', 'grub', 'kernel_cmdline', 'grubby']),
            backup=dict(type='bool', default=True),
            root=dict(type='path', default='/'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == '__main__':
    main()
