#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_proxmox_guest
short_description: Audit a Proxmox VE guest for AVIC inhibitors and fix it with qm set
version_added: 0.1.0
description:
  - Reads the configuration of one Proxmox VE virtual machine with C(qm config <vmid>) (pending
    changes applied, as the VM starts next time), audits it as qemu-server starts it (the rules of
    C(vfio.avic.proxmox_avic_issues), with this host's kernel, x2AVIC and C(kvm_amd) state), and with
    O(state=fixed) changes it through C(qm set <vmid>), the documented interface; the files of
    C(/etc/pve/qemu-server) are never edited by hand.
  - A VM's own C(cpu) flags accept only a fixed list, so x2apic, svm and the Hyper-V SynIC decisions go
    into a custom CPU model in C(/etc/pve/virtual-guest/cpu-models.conf) (C(reported-model) the VM's
    current model, its flags plus the fixes), added to the models already there (none is changed or
    dropped; atomic write, the previous file backed up next to it), and the VM gets
    C(cpu=custom-avic-<model>-<digest>) (its other C(cpu) options kept). The digest makes VMs whose
    hosts decide differently use different models.
  - The PIT gets C(-global kvm-pit.lost_tick_policy=discard) appended to the VM's C(args), whatever
    else they hold.
  - Per host, as for libvirt guests, x2apic is kept where x2AVIC works, svm is turned off only where it
    inhibits AVIC, and SynIC/stimer get C(hv-avic) where the kernel is 5.15 or later and QEMU 6.2 or later
    (else they are turned off), see O(hyperv).
  - The whole C(<vmid>.conf) (snapshots and pending changes included) is copied to O(backup_dir) before
    C(qm set) runs.
  - A running VM is never restarted unless O(restart=true); C(qm set) then leaves the changes pending
    (cpu and args are not hot-pluggable) and the module returns RV(restart_required). With
    O(restart=true) it runs C(qm shutdown <vmid> --timeout) and C(qm start <vmid>); should the VM not
    start with its fixed configuration, its previous C(cpu) and C(args) are put back with C(qm set), it is
    started again, and the module fails.
author:
  - vfio.avic maintainers (@vfio-avic)
extends_documentation_fragment:
  - vfio.avic.root

options:
  vmid:
    description: The VM ID (C(/etc/pve/qemu-server/<vmid>.conf)), 100 to 999999999.
    type: int
    required: true
  state:
    description: C(audited) reports only; C(fixed) changes the VM with C(qm set).
    type: str
    choices: [audited, fixed]
    default: audited
  hyperv:
    description:
      - What to do with Hyper-V SynIC and stimer (Windows guests). C(avic) keeps them and adds C(hv-avic);
        C(remove) turns them off; C(auto) uses C(avic) on kernel 5.15 or later with QEMU 6.2 or later,
        else C(remove) (with a note); C(keep) leaves them.
      - C(avic) on a kernel older than 5.15, or with an older or unknown QEMU, fails and changes nothing.
    type: str
    choices: [auto, avic, remove, keep]
    default: auto
  qemu_version:
    description:
      - The QEMU version of this node, like C(9.2.0). When not given it is read from
        C(kvm --version) (or C(qemu-system-x86_64 --version)); unknown when neither runs.
    type: str
  restart:
    description: Restart the VM when it runs with settings older than its configuration (fixed now or in an earlier run).
    type: bool
    default: false
  force_stop:
    description: With O(restart=true), stop the VM when it does not shut down within O(shutdown_timeout) (C(qm shutdown --forceStop 1)).
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds C(qm shutdown) waits for the guest (at least 1).
    type: int
    default: 180
  backup_dir:
    description:
      - Local directory for the copy of C(<vmid>.conf) taken before C(qm set); the newest is
        C(qemu-server-<vmid>.conf), older ones keep a time stamp. Not C(/etc/pve), which is the
        cluster file system shared by every node.
    type: path
    default: /var/lib/vfio-avic/backups
attributes:
  check_mode:
    support: full
    description: Audits and computes the C(qm set) command and the files; runs, writes and restarts nothing.
  diff_mode:
    support: full
    description: The VM configuration before and after (the C(qm set) command in its header) and C(cpu-models.conf).
notes:
  - O(root) is also where C(/etc/pve/virtual-guest/cpu-models.conf) and C(/etc/pve/qemu-server) are read; C(qm) still runs as it is.
  - Needs C(qm) (Proxmox VE's qemu-server) for O(state=fixed); O(state=audited) reads
    C(/etc/pve/qemu-server/<vmid>.conf) where C(qm) is missing.
  - Every option is checked before C(qm) is looked for or run.
seealso:
  - module: vfio.avic.avic_facts
  - module: vfio.avic.avic_domain
'''

EXAMPLES = r'''
- name: Audit VM 100
  vfio.avic.avic_proxmox_guest:
    vmid: 100

- name: Fix it; a running VM is restarted only when asked
  vfio.avic.avic_proxmox_guest:
    vmid: 100
    state: fixed
  register: vm100

- name: Say when a restart is needed
  ansible.builtin.debug:
    msg: VM 100 needs a restart to use AVIC
  when: vm100.restart_required
'''

RETURN = r'''
vmid:
  description: The VM ID.
  returned: always
  type: int
name:
  description: The VM's name (C(vm<vmid>) when it has none).
  returned: always
  type: str
running:
  description: Whether C(qm status) says the VM runs (null without C(qm)).
  returned: always
  type: bool
active:
  description: RV(running) as a boolean (false when not known), the key the guest role's report reads.
  returned: always
  type: bool
findings_before:
  description: Findings of the configuration before the module ran.
  returned: always
  type: list
  elements: dict
findings_after:
  description: Findings of the configuration after C(qm set) (the same as before with O(state=audited)).
  returned: always
  type: list
  elements: dict
qm_set:
  description: The arguments after C(qm set <vmid>) that fix the VM (run unless check mode or O(state=audited)); empty when nothing changes.
  returned: always
  type: list
  elements: str
  sample: [--cpu, custom-avic-host-fb761c, --args, -global kvm-pit.lost_tick_policy=discard]
commands:
  description: The commands run (or, in check mode, that would run), one line each.
  returned: always
  type: list
  elements: str
cpu_model:
  description: The custom CPU model the VM uses after the fix (C(name), C(text) of its section), or null.
  returned: always
  type: dict
notes:
  description: Choices the fix made that the user should know (for example turning SynIC off).
  returned: always
  type: list
  elements: str
changed_files:
  description: Files written (or that would be written), C(cpu-models.conf) only.
  returned: always
  type: list
  elements: str
backup:
  description: The copy of C(<vmid>.conf) taken before C(qm set), or null.
  returned: always
  type: str
restart_required:
  description: The VM runs and its configuration has AVIC fixes it does not run with yet (pending until it is restarted).
  returned: always
  type: bool
restarted:
  description: The VM was shut down and started again.
  returned: always
  type: bool
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule


from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox as proxmox_guest
from ansible_collections.vfio.avic.plugins.module_utils import hostfs
from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host
from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox_fix
from ansible_collections.vfio.avic.plugins.module_utils.guests import qm as proxmox_qm

CONF_DIR = proxmox_guest.CONF_DIR
CPU_MODELS = proxmox_guest.CPU_MODELS_FILE
VMID_RANGE = (100, 999999999)  # pve-vmid (PVE::JSONSchema)
_QEMU_VERSION_RE = re.compile(r'version (\d+\.\d+(?:\.\d+)?)')


def validate(module):
    """Refuse bad options by name before anything is looked at."""
    params = module.params
    if not VMID_RANGE[0] <= params['vmid'] <= VMID_RANGE[1]:
        module.fail_json(msg='vmid must be a Proxmox VE VM ID from %d to %d (the <vmid> of '
                             '/etc/pve/qemu-server/<vmid>.conf), got %d' % (VMID_RANGE + (params['vmid'],)))
    if params['shutdown_timeout'] < 1:
        module.fail_json(msg='shutdown_timeout must be at least 1 (seconds), got %d' % params['shutdown_timeout'])
    version = params['qemu_version']
    if version is not None and not re.match(r'^\d+\.\d+(\.\d+)?$', version.strip()):
        module.fail_json(msg='qemu_version must look like 9.2.0 (what kvm --version prints), got %r' % version)


def qemu_version(module):
    if module.params['qemu_version']:
        return module.params['qemu_version'].strip()
    for name in ('kvm', 'qemu-system-x86_64'):
        path = module.get_bin_path(name)
        if path:
            rc, out, _err = module.run_command([path, '--version'])
            match = _QEMU_VERSION_RE.search(out or '')
            if rc == 0 and match:
                return match.group(1)
    return None


def read_config(module, qm, files, vmid, result):
    """(configuration text with pending changes applied, current configuration text, running)."""
    path = '%s/%d.conf' % (CONF_DIR, vmid)
    if not qm.bin:
        if module.params['state'] == 'fixed':
            module.fail_json(msg='qm is not installed: state=fixed changes a VM only through qm set, on a '
                                 'Proxmox VE node (is this host one? use state=audited to read %s)' % path,
                             **result)
        text = files.read(path)
        if text is None:
            module.fail_json(msg='VM %d does not exist here: %s is missing' % (vmid, path), **result)
        return text, text, None
    rc, out, err = qm.run('config', vmid, ok_fail=True)
    if rc != 0:
        module.fail_json(msg='VM %d is not a VM of this node (qm config %d: %s); give the VM ID as '
                             '"qm list" shows it' % (vmid, vmid, ' '.join((err or out).split())), **result)
    _rc, current, _err = qm.run('config', vmid, '--current', '1')
    _rc, status, _err = qm.run('status', vmid)
    return out, current, status.strip() == 'status: running'


def stale(before, current):
    """The running VM lacks fixes its configuration has: the current (running) configuration has
    findings the configuration with pending changes applied no longer has."""
    ids = set(f['id'] for f in before if f['severity'] != 'info')
    return bool(set(f['id'] for f in current if f['severity'] != 'info') - ids)


def run(module):
    params = module.params
    validate(module)
    vmid = params['vmid']
    what = '%s/%d.conf' % (CONF_DIR, vmid)
    result = dict(changed=False, vmid=vmid, name='vm%d' % vmid, running=None, active=False, findings_before=[],
                  findings_after=[], qm_set=[], commands=[], cpu_model=None, notes=[], changed_files=[],
                  backup=None, restart_required=False, restarted=False)
    files = HostFiles(module, params['root'])
    qm = proxmox_qm.Qm(module, result)
    text, current_text, running = read_config(module, qm, files, vmid, result)
    result.update(running=running, active=bool(running))
    host = gather_facts.gather(root=params['root'], dmesg=False, guests=False)
    if not host.get('kernel'):
        module.fail_json(msg='cannot read the running kernel release of this host', **result)
    host = dict(host, qemu=qemu_version(module))
    models_text = files.read(CPU_MODELS)
    try:
        conf = proxmox_guest.parse_conf(text, what)
        result['name'] = conf.get('name') or result['name']
        plan = proxmox_fix.fix_plan(conf, host, vmid, models_text, what,
                                    params['hyperv'] if params['state'] == 'fixed' else 'keep')
        current = proxmox_guest.audit_proxmox(current_text, host, vmid, models_text, what) if running else []
        new_models = None
        if plan['cpu_model'] and params['state'] == 'fixed':
            new_models = proxmox_fix.merge_cpu_model(models_text, plan['cpu_model']['name'],
                                                     plan['cpu_model']['text'])
    except (proxmox_guest.ProxmoxConfigError, domain_host.HostFactsError) as exc:
        module.fail_json(msg=str(exc), **result)
    result.update(findings_before=plan['findings'], findings_after=plan['findings'])
    if params['state'] == 'audited':
        result['restart_required'] = bool(running) and stale(plan['findings'], current)
        return result
    result.update(qm_set=plan['qm_set'], notes=list(plan['notes']))
    diffs = []
    if plan['qm_set']:
        result['changed'] = True
        if plan['cpu_model']:
            result['cpu_model'] = plan['cpu_model']
            if files.write(CPU_MODELS, new_models, diffs, mode=0o640,
                           note='custom CPU model %s added' % plan['cpu_model']['name']):
                result['changed_files'].append(CPU_MODELS)
        # the copy first, so that a failed qm set leaves a backup of what was there
        if not module.check_mode:
            result['backup'] = backup(module, files, vmid)
        line = proxmox_qm.command_line(['qm', 'set', str(vmid)] + plan['qm_set'])
        diffs.append({'before': proxmox_guest.conf_text(conf), 'after': proxmox_guest.conf_text(plan['conf']),
                      'before_header': '%s (qm config %d)' % (what, vmid),
                      'after_header': '%s after: %s%s' % (what, line, ' (pending until the VM restarts)'
                                                          if running else '')})
        if module.check_mode:
            result['commands'].append(line)
            result['findings_after'] = proxmox_guest.audit_proxmox(plan['conf'], host, vmid,
                                                                   new_models or models_text, what)
        else:
            qm.run('set', vmid, *plan['qm_set'], record=True)
            _rc, text, _err = qm.run('config', vmid)
            models_text = files.read(CPU_MODELS)
            try:
                result['findings_after'] = proxmox_guest.audit_proxmox(text, host, vmid, models_text, what)
            except proxmox_guest.ProxmoxConfigError as exc:
                module.fail_json(msg='qm set %d ran, but its result cannot be read: %s' % (vmid, exc), **result)
    if module._diff and diffs:
        result['diff'] = [d['diff'] if 'diff' in d else d for d in diffs]
    result['restart_required'] = bool(running) and (bool(plan['qm_set']) or stale(result['findings_after'], current))
    if result['restart_required'] and params['restart']:
        restart_args = ['shutdown', vmid, '--timeout', params['shutdown_timeout']]
        if params['force_stop']:
            restart_args += ['--forceStop', '1']
        if module.check_mode:
            result['changed'] = True
            result['commands'] += ['qm %s' % ' '.join(str(a) for a in restart_args), 'qm start %d' % vmid]
            result['notes'].append('restart: VM %d would be restarted' % vmid)
        else:
            qm.run(*restart_args, record=True)
            rc, out, err = qm.run('start', vmid, record=True, ok_fail=True)
            if rc != 0:
                put_back(module, qm, vmid, proxmox_guest.parse_conf(current_text, what), result,
                         ' '.join((err or out).split()))
            result.update(changed=True, restarted=True, restart_required=False)
    return result


def put_back(module, qm, vmid, previous, result, error):
    """The VM did not start with its fixed configuration: give it back the cpu and args it ran
    with, start it again, and fail saying so (a VM is never left off)."""
    args, deleted = [], []
    for key in ('cpu', 'args'):
        if previous.get(key) is not None:
            args += ['--%s' % key, previous[key]]
        else:
            deleted.append(key)
    if deleted:
        args += ['--delete', ','.join(deleted)]
    qm.run('set', vmid, *args, record=True)
    rc, out, err = qm.run('start', vmid, record=True, ok_fail=True)
    result.update(changed=True, restart_required=False)
    module.fail_json(msg='VM %d did not start with the fixed configuration (qm start: %s); its previous '
                         'cpu and args were put back and it %s. The fix is not applied: fix the cause and '
                         'run again' % (vmid, error, 'runs again' if rc == 0 else
                                        'did not start either (qm start: %s)' % ' '.join((err or out).split())),
                     **result)


def backup(module, files, vmid):
    """Copy the whole <vmid>.conf to backup_dir/qemu-server-<vmid>.conf (an older copy there is
    kept with a time stamp by HostFiles)."""
    text = files.read('%s/%d.conf' % (CONF_DIR, vmid))
    if text is None:
        return None
    directory = module.params['backup_dir']
    try:
        hostfs.make_backup_dir(directory)
    except OSError as exc:
        module.fail_json(msg='cannot create backup_dir %s: %s; nothing was changed' % (directory, exc))
    path = os.path.join(directory, 'qemu-server-%d.conf' % vmid)
    HostFiles(module).write(path, text, [], mode=0o600)
    return path


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vmid=dict(type='int', required=True),
            state=dict(type='str', default='audited', choices=['audited', 'fixed']),
            hyperv=dict(type='str', default='auto', choices=list(proxmox_fix.HYPERV_CHOICES)),
            qemu_version=dict(type='str'),
            restart=dict(type='bool', default=False),
            force_stop=dict(type='bool', default=False),
            shutdown_timeout=dict(type='int', default=180),
            backup_dir=dict(type='path', default='/var/lib/vfio-avic/backups'),
            root=dict(type='path', default='/'),
        ),
        supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == '__main__':
    main()
