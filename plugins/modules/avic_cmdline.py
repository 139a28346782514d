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
  - Edits C(GRUB_CMDLINE_LINUX_DEFAULT) for GRUB, C(/etc/kernel/cmdline) for systemd-boot,
    kernel-install and Proxmox with systemd-boot, or the boot entries through C(grubby).
  - 'GRUB: the shell value is edited token by token: double-quoted (escaped quotes such as
    C(dyndbg="file foo.c +p") included), single-quoted and unquoted values, values spread over
    lines, text after the closing quote (C(; GRUB_TIMEOUT=3), a comment) and every other line stay
    byte for byte. C(GRUB_CMDLINE_LINUX) and C(GRUB_CMDLINE_LINUX_DEFAULT) are read together, as GRUB
    joins them: an owned argument already in C(GRUB_CMDLINE_LINUX) is not added again (a different
    value of its key is replaced there). The files of C(/etc/default/grub.d/*.cfg) are read after
    C(/etc/default/grub) as C(grub-mkconfig) does; when one of them sets
    C(GRUB_CMDLINE_LINUX_DEFAULT) (Ubuntu cloud images), that file, which wins, is edited and the
    message says so. A value whose quoting cannot be parsed is refused with its file and line.'
  - 'systemd-boot and kernel-install: when C(/etc/kernel/cmdline) does not exist, kernel-install
    falls back to C(/usr/lib/kernel/cmdline), then to C(/proc/cmdline); writing only the owned
    arguments would lose C(root=) and the rest. The file is then seeded from that fallback
    without the boot loader''s C(BOOT_IMAGE=) and C(initrd=), and the message and the diff say so.
    Nothing is written when there is nothing to seed it with.'
  - 'C(auto) target rule: Proxmox VE with C(/etc/kernel/proxmox-boot-uuids) follows the ESP modes
    of C(proxmox-boot-tool status) (C(uefi): systemd-boot reads C(/etc/kernel/cmdline); C(grub),
    legacy BIOS or Secure Boot: C(/etc/default/grub)); without them, a BIOS boot (no
    C(/sys/firmware/efi)) is GRUB and a UEFI boot uses C(/etc/kernel/cmdline) when it exists or
    there is no C(/etc/default/grub). Elsewhere a systemd-boot C(loader.conf) means
    C(/etc/kernel/cmdline) unless C(/etc/default/grub) exists and the host did not boot through
    UEFI; C(/etc/kernel/cmdline) alone means kernel-install; C(grubby) with Boot Loader
    Specification entries (C(/boot/loader/entries), Fedora and RHEL) means C(grubby); else
    C(/etc/default/grub); else C(grubby); else C(none).'
  - 'C(grubby): C(grubby --update-kernel=ALL) edits every boot entry; for the kernels installed
    later and for C(grub2-mkconfig) runs, C(/etc/default/grub) and C(/etc/kernel/cmdline) are edited
    too where they exist (older grubby versions leave them alone; newer ones update
    C(GRUB_CMDLINE_LINUX), which is then not duplicated).'
  - Backs each file up before a change. Regenerating the boot loader configuration is left to the
    caller (the C(vfio.avic.host) role runs it as a handler); RV(refresh) says what to run.
  - RV(reboot_required) says whether a reboot would apply anything, comparing the running command
    line (C(/proc/cmdline)) with RV(next_boot); the module never reboots.
author:
  - vfio.avic maintainers (@vfio-avic)
extends_documentation_fragment:
  - vfio.avic.root
  - vfio.avic.backup
options:
  args:
    description:
      - Arguments to ensure, such as C(iommu=pt) and C(amd_iommu_intr=vapic).
      - An argument the system boots with (C(root=), C(rootflags=), C(rootfstype=), C(ro), C(rw),
        C(init=), C(rdinit=), C(resume=), C(cryptdevice=), C(boot=), C(rd.*), ...) is refused by
        name and nothing is changed, since owning it would replace the user's value.
    type: list
    elements: str
    required: true
  remove:
    description:
      - Argument keys to remove (unless also in O(args)), such as C(amd_iommu_intr).
      - Only the families this collection adds may be removed (C(amd_iommu*), C(iommu), C(iommu.*),
        C(kvm_amd.*) and C(kvm-amd.*)), or keys of O(args). Any other key, and every argument the
        system boots with, is refused by name before anything is read or written.
    type: list
    elements: str
    default: []
  target:
    description:
      - Where the command line is configured. C(auto) picks C(kernel_cmdline) on Proxmox and
        systemd-boot hosts, C(grubby) on hosts with Boot Loader Specification entries, else C(grub)
        when C(/etc/default/grub) exists, else C(grubby) when it is installed, else C(none)
        (nothing to edit; reported). The full rule is in the description.
    type: str
    choices: [auto, grub, kernel_cmdline, grubby]
    default: auto
attributes:
  check_mode:
    support: full
    description: Reports the new command line and the diff; writes nothing.
  diff_mode:
    support: full
    description: Shows the file before and after.
notes:
  - With O(root) other than C(/), C(grubby) is not run; the files below O(root) are edited.
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
next_boot:
  description: >-
    The command line the next boot gets from the configuration edited (GRUB: C(GRUB_CMDLINE_LINUX)
    then C(GRUB_CMDLINE_LINUX_DEFAULT) after every file; grubby: the default entry), null for C(none).
  returned: always
  type: str
paths:
  description: Every file edited (GRUB with a C(/etc/default/grub.d) file, grubby with its files).
  returned: always
  type: list
  elements: str
reboot_required:
  description: >-
    Whether a reboot would apply owned arguments: the running command line lacks one (or carries a
    key of O(remove)) and RV(next_boot) carries them all. False when the running line has them, and
    when the next boot would not carry them either (RV(reboot_reason) then says why).
  returned: always
  type: bool
reboot_reason:
  description: Why a reboot is required, or why it would not help; null when the running line has every owned argument.
  returned: always
  type: str
notes:
  description: What the edit had to decide (a seeded file, the grub.d file that wins, the Proxmox ESP mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils.boot import target as boot_target
from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse
from ansible_collections.vfio.avic.plugins.module_utils.parse import grub_shell
from ansible_collections.vfio.avic.plugins.module_utils.plan import cmdline as cmdline_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError
from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles

GRUB = boot_target.GRUB_DEFAULT_FILE
KERNEL_CMDLINE = boot_target.KERNEL_CMDLINE_FILE


def pick_target(files, module, notes):
    """boot_target.detect() on the host, grubby counted only where it can run (root /)."""
    def run(argv):
        return module.run_command(argv, environ_update={'LC_ALL': 'C'})
    host = files.root == '/'
    target, modes = boot_target.detect(files, run if host else None,
                                       grubby=host and bool(module.get_bin_path('grubby')))
    if modes:
        notes.append('proxmox-boot-tool status: ESPs configured with %s' % ', '.join(sorted(modes)))
    return target


def grubby_entries(module, grubby):
    """Args of every boot entry and the default one's, from grubby --info=ALL."""
    rc, out, err = module.run_command([grubby, '--info=ALL'])
    if rc != 0:
        module.fail_json(msg='grubby --info=ALL failed: %s' % (err or out).strip())
    entries = {}
    index = None
    for line in out.splitlines():
        if line.startswith('index='):
            index = line[len('index='):].strip()
        elif line.startswith('args=') and index is not None:
            value = line[len('args='):].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            entries[index] = value
    rc, out, _err = module.run_command([grubby, '--default-index'])
    default = out.strip() if rc == 0 and out.strip() in entries else (sorted(entries) or [None])[0]
    return entries, default


def run_grubby(module, args, remove):
    grubby = module.get_bin_path('grubby', required=True)
    entries, default = grubby_entries(module, grubby)
    before = entries.get(default, '')
    changed = any(cmdline_parse.cmdline_needs_change(a, args, remove) for a in entries.values())
    if changed and not module.check_mode:
        key = cmdline_parse.arg_key
        words = set(w for a in entries.values() for w in cmdline_parse.split_args(a))
        add = [a for a in args if any(a not in cmdline_parse.split_args(e) for e in entries.values())]
        drop = sorted(set(key(w) for w in words
                          if key(w) in set(key(r) for r in remove)
                          and key(w) not in set(key(a) for a in args)))
        command = [grubby, '--update-kernel=ALL']
        if add:
            command.append('--args=%s' % ' '.join(add))
        if drop:
            command.append('--remove-args=%s' % ' '.join(drop))
        rc, out, err = module.run_command(command)
        if rc != 0:
            module.fail_json(msg='grubby failed: %s' % (err or out).strip())
    return changed, before, cmdline_parse.edit_cmdline(before, args, remove)


def edit_grub(files, module, args, remove, changes, notes):
    """Edit the GRUB files; returns (before, after, path of the new arguments)."""
    try:
        sources = grub_shell.grub_sources(files.read, files.listdir)
        edit = grub_shell.edit_grub_files(sources, args, remove)
    except grub_shell.ShellParseError as exc:
        module.fail_json(msg=str(exc))
    for path in sorted(edit['texts']):
        files.write(path, edit['texts'][path], changes)
    notes.extend(edit['notes'])
    return edit['before'], edit['after'], edit['path']


def edit_kernel_cmdline(files, module, args, remove, changes, notes, seed=True):
    """Edit /etc/kernel/cmdline, seeding it when it is missing; returns (before, after)."""
    text = files.read(KERNEL_CMDLINE)
    note = None
    if text is None:
        if not seed:
            return None, None
        source = boot_target.KERNEL_CMDLINE_DEFAULTS if files.exists(
            boot_target.KERNEL_CMDLINE_DEFAULTS) else '/proc/cmdline'
        try:
            text = cmdline_plan.seed_kernel_cmdline(files.read(source) or '')
        except PlanError as exc:
            module.fail_json(msg=str(exc))
        note = 'seeded from %s without BOOT_IMAGE= and initrd=' % source
        notes.append('%s did not exist: %s, as kernel-install would have used it' % (KERNEL_CMDLINE, note))
    before = ' '.join(cmdline_parse.split_args(text))
    after = cmdline_parse.edit_cmdline(before, args, remove)
    if note or after != before:
        files.write(KERNEL_CMDLINE, after + '\n', changes, note=note)
    return before if not note else '', after


def reboot(files, args, remove, next_boot, target):
    """reboot_required and reboot_reason: whether the next boot applies what the running
    command line (/proc/cmdline below the root) lacks."""
    decision = cmdline_plan.cmdline_decision((files.read('/proc/cmdline') or '').strip(), next_boot,
                                             args, remove, target)
    return {'reboot_required': decision['pending'], 'reboot_reason': decision['reason']}


def run(module):
    params = module.params
    files = HostFiles(module, params['root'])
    try:
        args = cmdline_plan.owned_args(params['args'])
        remove = cmdline_plan.removable_keys(params['remove'], args)
    except PlanError as exc:
        module.fail_json(msg=str(exc))  # the fields are this module's options
    notes = []
    target = params['target']
    if target == 'auto':
        target = pick_target(files, module, notes)
    changes = []
    result = dict(target=target, path=None, paths=[], before='', after='', next_boot=None,
                  refresh='none', backups=[], notes=notes)
    if target == 'none':
        result['msg'] = ('no boot loader configuration found (%s, %s or grubby): the kernel command '
                         'line was not changed' % (GRUB, KERNEL_CMDLINE))
        result['changed'] = False
        result.update(reboot(files, args, remove, None, target))
        return result
    if target == 'grubby':
        changed, before, after = run_grubby(module, args, remove)
        if files.exists(GRUB):
            edit_grub(files, module, args, remove, changes, notes)
        edit_kernel_cmdline(files, module, args, remove, changes, notes, seed=False)
        result.update(changed=changed or bool(changes), before=before, after=after, next_boot=after)
    elif target == 'grub':
        if files.read(GRUB) is None:
            module.fail_json(msg='target=grub but %s does not exist on the host' % GRUB)
        before, after, path = edit_grub(files, module, args, remove, changes, notes)
        result.update(path=path, refresh='grub-mkconfig', before=before, after=after, next_boot=after)
    else:
        before, after = edit_kernel_cmdline(files, module, args, remove, changes, notes)
        result.update(path=KERNEL_CMDLINE, before=before, after=after, next_boot=after,
                      refresh='proxmox-boot-tool' if files.exists(boot_target.PROXMOX_UUIDS)
                      else 'kernel-install')
    result.update(changed=result.get('changed') or bool(changes), backups=files.backups,
                  paths=[c['path'] for c in changes])
    result.update(reboot(files, args, remove, result['next_boot'], target))
    if notes:
        result['msg'] = '; '.join(notes)
    if module._diff:
        diffs = [c['diff'] for c in changes]
        if target == 'grubby' and result['changed']:
            diffs.insert(0, {'before': result['before'] + '\n', 'after': result['after'] + '\n',
                             'before_header': 'grubby boot entries (default shown)',
                             'after_header': 'grubby boot entries (default shown)'})
        if diffs:
            result['diff'] = diffs[0] if len(diffs) == 1 else diffs
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
