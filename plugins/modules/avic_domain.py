#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_domain
short_description: Audit a libvirt domain for AVIC inhibitors and fix its persistent definition
version_added: 0.1.0
description:
  - Reads the persistent definition of one libvirt domain through C(virsh), audits it for everything
    that keeps AVIC off on this host (the rules of C(vfio.avic.domain_avic_issues), with this host's
    kernel, x2AVIC and C(kvm_amd) state), and with O(state=fixed) defines it again with each fixable
    finding repaired, keeping everything else of the XML.
  - The previous XML is saved in O(backup_dir) before a change.
  - A running guest is never stopped or restarted unless O(restart=true); then it is shut down
    gracefully, and started again once it is off. If it does not stop within O(shutdown_timeout) it is
    left running and the module fails, unless O(force_off=true).
  - With O(xml), a domain that does not exist yet is defined from that XML (made AVIC-friendly first);
    with O(state=audited) the XML is only audited and nothing is defined.
  - On a host whose CPU is not AMD or Hygon the only finding is C(not_amd) and nothing is changed.
  - A domain that is not C(type='kvm') (QEMU TCG) is audited as usual, but its CPU is never switched
    to C(host-passthrough), which TCG cannot run.
author:
  - vfio.avic maintainers (@vfio-avic)
extends_documentation_fragment:
  - vfio.avic.root
  - vfio.avic.libvirt_uri
  - vfio.avic.domain_fix
options:
  libvirt_uri:
    aliases: [uri]
  name:
    description: The libvirt domain.
    type: str
    required: true
  state:
    description: C(audited) reports only; C(fixed) rewrites the persistent definition.
    type: str
    choices: [audited, fixed]
    default: audited
  xml:
    description: Definition for a domain that does not exist yet (it is never used to overwrite one).
    type: str
  backup_dir:
    description: Directory for the previous XML of a changed domain.
    type: path
    default: /var/lib/vfio-avic/backups
  restart:
    description:
      - Restart a running guest, gracefully, when it still runs an older definition than the persistent
        one (fixed now or in an earlier run). A paused guest is not restarted; it is reported.
    type: bool
    default: false
  force_off:
    description:
      - Power the guest off when it does not shut down in time (data in it may be lost).
      - Has an effect only with O(restart=true).
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown (at least 1).
    type: int
    default: 180
attributes:
  check_mode:
    support: full
    description: Audits and computes the fixed XML; defines, backs up and restarts nothing.
  diff_mode:
    support: full
    description: The persistent XML before and after.
notes:
  - O(root) is where this host's CPU, kernel and C(kvm_amd) state are read, as M(vfio.avic.avic_facts)
    does (a recorded fixture tree); C(virsh) still talks to O(libvirt_uri).
  - Needs C(virsh) (libvirt-clients) on the host.
  - Every option is checked before C(virsh) is looked for or libvirt is asked anything, so a bad value
    is reported as such, also where libvirt is not reachable.
seealso:
  - module: vfio.avic.avic_facts
'''

EXAMPLES = r'''
- name: Audit a guest
  vfio.avic.avic_domain:
    name: win11

- name: Fix it; it restarts only when asked
  vfio.avic.avic_domain:
    name: win11
    state: fixed
    hyperv: avic
  register: win11

- name: Restart it too if it still runs an older definition (also one fixed in an earlier run)
  vfio.avic.avic_domain:
    name: win11
    state: fixed
    restart: true

- name: Say when a restart is needed
  ansible.builtin.debug:
    msg: win11 needs a restart to use AVIC
  when: win11.restart_required
'''

RETURN = r'''
findings_before:
  description: Findings of the persistent definition before the module ran.
  returned: always
  type: list
  elements: dict
findings_after:
  description: Findings after the fix (the same as before with O(state=audited)).
  returned: always
  type: list
  elements: dict
changes:
  description: What the fix changed, one line each.
  returned: always
  type: list
  elements: str
notes:
  description: Choices the fix made that the user should know (for example a Hyper-V fallback).
  returned: always
  type: list
  elements: str
active:
  description: Whether the domain was running, paused or suspended (it runs its live definition).
  returned: always
  type: bool
domain_state:
  description: The domain's state as C(virsh domstate) printed it before the module ran, or null.
  returned: always
  type: str
defined:
  description: Whether the domain was newly defined from O(xml).
  returned: always
  type: bool
restart_required:
  description: >-
    The domain runs (or is paused) with an older definition: changed now, or with findings the
    persistent one no longer has (fixed in an earlier run); a restart applies it.
  returned: always
  type: bool
restarted:
  description: Whether the module restarted the domain.
  returned: always
  type: bool
backup:
  description: The backup file of the previous XML, or null.
  returned: always
  type: str
hv_avic:
  description: >-
    Whether this libvirt and QEMU support C(<avic state='on'/>) (C(hv_avic)), why not
    (C(hv_avic_reason)), and the versions read (C(libvirt), C(qemu)).
  returned: always
  type: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule


from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_fix
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import versions as libvirt_versions
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import virsh as libvirt_virsh
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils import hostfs
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_xml as libvirt_domain
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host

FIX_OPTIONS = ('x2apic', 'svm', 'pit', 'hyperv', 'vapic', 'hypervclock', 'invtsc', 'ioapic', 'cpu_mode')


def checked(module, virsh, result, *args):
    """The output of a virsh command that must succeed; else the module fails with ``result``."""
    try:
        return virsh.check(*args)
    except libvirt_virsh.VirshError as exc:
        module.fail_json(msg=str(exc), **result)


def hv_avic_support(virsh):
    """hv_avic_caps() of the running daemon and hypervisor."""
    _rc, out, _err = virsh.call('version', '--daemon')
    return libvirt_versions.hv_avic_caps(libvirt_versions.parse_virsh_version(out))


def live_differs(module, virsh, host, name, persistent_findings):
    """True when the running guest still has findings its persistent definition no longer has."""
    live_xml = checked(module, virsh, {}, 'dumpxml', '--domain', name)
    try:
        live = libvirt_domain.audit_domain(live_xml, host, name)
    except libvirt_domain.DomainXMLError:
        return False
    return bool(set(f['id'] for f in live) - set(f['id'] for f in persistent_findings))


def start_or_restore(module, virsh, name, result, previous_xml):
    """Start the domain; when its new definition does not start (QEMU refuses a feature this host
    lacks, say), define ``previous_xml`` again, start that, and fail with both errors, so that a
    guest that ran before runs again."""
    rc, _out, err = virsh.call('start', '--domain', name)
    if rc == 0:
        return
    error = ' '.join((err or '').split())
    try:
        virsh.define(previous_xml)
    except libvirt_virsh.VirshError as exc:
        module.fail_json(msg=str(exc), **result)
    rc, _out, err2 = virsh.call('start', '--domain', name)
    failed = dict(result, changed=True, restarted=False, restart_required=False,
                  findings_after=result.get('findings_before', []))
    module.fail_json(msg='domain %s did not start with the fixed definition (%s). %s' % (
        name, error, 'Its previous definition was defined again and it runs with it; fix the cause '
        '(or set the option that added the setting to keep) and run again'
        if rc == 0 else 'Its previous definition was defined again but did not start either (%s): '
        'start it yourself' % ' '.join((err2 or '').split())), **failed)


def restart(module, virsh, name, result, previous_xml):
    """Shut the domain down gracefully and start it again (libvirt/virsh.restart); on a timeout
    without force_off it is left running and the module fails with what was already done
    (changed, backup)."""
    try:
        done = libvirt_virsh.restart(virsh, name, module.params['shutdown_timeout'], module.params['force_off'],
                                     start=lambda domain: start_or_restore(module, virsh, domain, result,
                                                                           previous_xml))
    except libvirt_virsh.VirshError as exc:
        module.fail_json(msg=str(exc), **result)
    if done['error']:
        module.fail_json(msg='%s: it is left running with its old definition (the new one is saved); shut '
                             'it down yourself, or set force_off: true' % done['error'],
                         **dict(result, restart_required=True, restarted=False))


def validate(module):
    """Every option checked before virsh is looked for or libvirt is asked anything."""
    params = module.params
    name = params['name']
    if not name or not name.strip() or '\0' in name or '/' in name:
        module.fail_json(msg='name %r is not a libvirt domain name: give it as "virsh list --all" '
                             'shows it' % (name,))
    if params['shutdown_timeout'] < 1:
        module.fail_json(msg='shutdown_timeout must be a number of seconds of at least 1, got %d'
                             % params['shutdown_timeout'])
    if not os.path.isabs(params['backup_dir']) or os.path.isfile(params['backup_dir']):
        module.fail_json(msg='backup_dir must be an absolute path of a directory, got %r'
                             % params['backup_dir'])
    if not os.path.isdir(params['root']):
        module.fail_json(msg='root %r is not a directory: leave root unset for this host' % params['root'])
    if params['xml'] is not None:
        try:
            root = libvirt_domain.parse_domain(params['xml'], name)
        except libvirt_domain.DomainXMLError as exc:
            module.fail_json(msg='xml: %s' % exc)
        if root.findtext('name') != name:
            module.fail_json(msg='xml: the <name> in the XML is %r, not %r' % (root.findtext('name'), name))


def run(module):
    params = module.params
    validate(module)
    virsh = libvirt_virsh.Virsh.for_module(module, params['libvirt_uri'])
    if not virsh.binary:
        module.fail_json(msg='virsh is not installed on this host: %s' % libvirt_virsh.INSTALL_HINT)
    name = params['name']
    options = dict((k, params[k]) for k in FIX_OPTIONS)
    options['nested'] = params['nested']
    result = dict(changed=False, findings_before=[], findings_after=[], changes=[], notes=[],
                  active=False, domain_state=None, defined=False, restart_required=False,
                  restarted=False, backup=None)
    caps = hv_avic_support(virsh)
    result['hv_avic'] = caps
    # the QEMU version of virsh version in the host, so that every audit below agrees with the fix
    host = domain_fix.audit_host(gather_facts.gather(root=params['root'], dmesg=False, guests=False), caps)
    if not host.get('kernel'):
        module.fail_json(msg='cannot read the running kernel release of this host', **result)

    rc, out, err = virsh.call('dominfo', '--domain', name)
    if rc != 0:
        if 'failed to connect' in (err or '').lower():
            module.fail_json(msg=virsh.error(('dominfo', '--domain', name), rc, out, err), **result)
        if not params['xml']:
            module.fail_json(msg='domain %r is not defined at %s (virsh dominfo: %s); give its name as '
                                 '"virsh list --all" shows it' % (name, params['libvirt_uri'], ' '.join(err.split())))
        before_xml = params['xml']
        new = True
    else:
        before_xml = checked(module, virsh, result, 'dumpxml', '--inactive', '--domain', name)
        result['domain_state'] = checked(module, virsh, result, 'domstate', '--domain', name).strip()
        result['active'] = libvirt_virsh.is_active(result['domain_state'])
        new = False
    try:
        fixed = domain_fix.fix_domain(before_xml, host, options, caps, name)
    except (domain_fix.FixOptionError, libvirt_domain.DomainXMLError, domain_host.HostFactsError) as exc:
        # HvAvicUnsupported (an explicit hyperv: avic this host cannot use) is a FixOptionError
        module.fail_json(msg=str(exc), **result)
    result['findings_before'] = fixed['findings_before']
    result['findings_after'] = fixed['findings_before']
    if params['state'] == 'audited':
        if new:
            result['notes'] = ['state=audited: domain %s is not defined; its XML was audited, nothing '
                               'was defined' % name]
        else:
            result['restart_required'] = result['active'] and live_differs(
                module, virsh, host, name, fixed['findings_before'])
        return result
    result.update(findings_after=fixed['findings_after'], changes=fixed['changes'], notes=list(fixed['notes']))
    if fixed['changed'] or new:
        define(module, virsh, name, host, before_xml, fixed, new, result)
        result['restart_required'] = result['active']
    else:
        result['restart_required'] = result['active'] and live_differs(module, virsh, host, name,
                                                                       fixed['findings_after'])
    if result['restart_required'] and params['restart']:
        if result['domain_state'] in libvirt_virsh.PAUSED_STATES:
            result['notes'].append('restart: domain %s is %s, so it was not restarted: resume it and run '
                                   'again, or restart it yourself' % (name, result['domain_state']))
        elif module.check_mode:
            result['changed'] = True
            result['notes'].append('restart: domain %s would be restarted' % name)
        else:
            # what ran until now, to put back should the new definition not start
            previous = before_xml if fixed['changed'] else \
                checked(module, virsh, result, 'dumpxml', '--migratable', '--domain', name)
            restart(module, virsh, name, result, previous)
            result.update(changed=True, restarted=True, restart_required=False)
    return result


def define(module, virsh, name, host, before_xml, fixed, new, result):
    """Back up and define the fixed XML (nothing in check mode)."""
    result['changed'] = True
    result['defined'] = new
    if module._diff:
        result['diff'] = {'before': '' if new else domain_fix.normalise_xml(before_xml, name),
                          'after': fixed['xml'],
                          'before_header': '%s (persistent)' % name, 'after_header': '%s (persistent)' % name}
    if module.check_mode:
        return
    if not new:
        result['backup'] = hostfs.write_backup(module.params['backup_dir'], name, before_xml)
    try:
        virsh.define(fixed['xml'])
    except libvirt_virsh.VirshError as exc:
        module.fail_json(msg=str(exc), **dict(result, changed=False))
    after_xml = checked(module, virsh, result, 'dumpxml', '--inactive', '--domain', name)
    result['findings_after'] = libvirt_domain.audit_domain(after_xml, host, name)


def main():
    spec = dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='audited', choices=['audited', 'fixed']),
        libvirt_uri=dict(type='str', default='qemu:///system', aliases=['uri']),
        xml=dict(type='str'),
        backup_dir=dict(type='path', default='/var/lib/vfio-avic/backups'),
        nested=dict(type='bool', default=False),
        restart=dict(type='bool', default=False),
        force_off=dict(type='bool', default=False),
        shutdown_timeout=dict(type='int', default=180),
        root=dict(type='path', default='/'),
    )
    for key in FIX_OPTIONS:
        spec[key] = dict(type='str', default='auto', choices=list(domain_fix.CHOICES[key]))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == '__main__':
    main()
