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
  - With O(xml), a domain that does not exist yet is defined from that XML (made AVIC-friendly first).
author:
  - vfio.avic maintainers (@vfio-avic)
options:
  name:
    description: The libvirt domain.
    type: str
    required: true
  state:
    description: C(audited) reports only; C(fixed) rewrites the persistent definition.
    type: str
    choices: [audited, fixed]
    default: audited
  uri:
    description: Libvirt connection URI.
    type: str
    default: qemu:///system
  xml:
    description: Definition for a domain that does not exist yet (it is never used to overwrite one).
    type: str
  backup_dir:
    description: Directory for the previous XML of a changed domain.
    type: path
    default: /var/lib/vfio-avic/backups
  nested:
    description: The guest runs its own VMs; keep svm.
    type: bool
    default: false
  x2apic:
    description: C(auto) disables x2apic unless the host has working x2AVIC.
    type: str
    choices: [auto, disable, keep]
    default: auto
  svm:
    description: C(auto) disables svm unless O(nested=true).
    type: str
    choices: [auto, disable, keep]
    default: auto
  pit:
    description: C(auto) sets the PIT timer to C(tickpolicy='discard').
    type: str
    choices: [auto, keep]
    default: auto
  hyperv:
    description:
      - C(avic) keeps SynIC and stimer and adds C(<avic state='on'/>); C(remove) drops SynIC and stimer;
        C(auto) uses C(avic) where libvirt (8.10 or later) and QEMU (6.2 or later) support it, else C(remove).
    type: str
    choices: [auto, avic, remove, keep]
    default: auto
  vapic:
    description: C(auto) and C(disable) turn the Hyper-V vapic enlightenment off.
    type: str
    choices: [auto, disable, keep]
    default: auto
  hypervclock:
    description: C(auto) adds the hypervclock timer to Windows guests.
    type: str
    choices: [auto, keep]
    default: auto
  invtsc:
    description: C(auto) requires invtsc for Windows guests.
    type: str
    choices: [auto, keep]
    default: auto
  ioapic:
    description:
      - C(auto) adds C(<ioapic driver='qemu'/>) (split irqchip) on kernels older than 5.6; C(qemu)
        always, the workaround for devices that hang with IOMMU AVIC.
    type: str
    choices: [auto, qemu, keep]
    default: auto
  cpu_mode:
    description: C(auto) switches a named CPU model to C(host-passthrough).
    type: str
    choices: [auto, keep]
    default: auto
  restart:
    description: Restart a running guest whose definition changed, gracefully.
    type: bool
    default: false
  force_off:
    description: Power the guest off when it does not shut down in time (data in it may be lost).
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown.
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
  - Needs C(virsh) (libvirt-clients) on the host.
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
  description: Whether the domain was running.
  returned: always
  type: bool
defined:
  description: Whether the domain was newly defined from O(xml).
  returned: always
  type: bool
restart_required:
  description: >-
    The domain runs with an older definition that still has findings the persistent one no longer
    has (fixed now or in an earlier run); a restart applies it.
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
  description: Whether this libvirt and QEMU support C(<avic state='on'/>), and why not.
  returned: always
  type: dict
'''

import os
import re
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils import avic_domain, avic_domain_fix, avic_gather

FIX_OPTIONS = ('x2apic', 'svm', 'pit', 'hyperv', 'vapic', 'hypervclock', 'invtsc', 'ioapic', 'cpu_mode')


class Virsh(object):
    def __init__(self, module):
        self.module = module
        self.bin = module.get_bin_path('virsh')
        if not self.bin:
            module.fail_json(msg='virsh is not installed on this host: install libvirt-clients '
                                 '(Debian/Ubuntu) or libvirt-client (Fedora/RHEL, Arch, openSUSE)')

    def run(self, *args, **kw):
        rc, out, err = self.module.run_command([self.bin, '-c', self.module.params['uri']] + list(args))
        if rc != 0 and not kw.get('ok_fail'):
            text = ' '.join((err or out).split())
            if 'failed to connect' in text.lower():
                self.module.fail_json(msg='libvirt is not reachable at %s: %s (is libvirtd running?)'
                                          % (self.module.params['uri'], text))
            self.module.fail_json(msg='virsh %s failed: %s' % (' '.join(args), text))
        return rc, out, err


def _version(text, what):
    match = re.search(r'%s (\d+)\.(\d+)' % what, text or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


def hv_avic_support(virsh):
    _rc, out, _err = virsh.run('version', ok_fail=True)
    libvirt = _version(out, 'libvirt')
    qemu = _version(out, 'QEMU')
    if libvirt is None or libvirt < (8, 10):
        return {'hv_avic': False, 'hv_avic_reason': 'libvirt %s' % ('.'.join(map(str, libvirt)) if libvirt else 'version unknown')}
    if qemu is not None and qemu < (6, 2):
        return {'hv_avic': False, 'hv_avic_reason': 'QEMU %d.%d' % qemu}
    return {'hv_avic': True, 'hv_avic_reason': None}


def domstate(virsh, name):
    _rc, out, _err = virsh.run('domstate', name)
    return out.strip()


def live_differs(virsh, host, name, persistent_findings):
    """True when the running guest still has findings its persistent definition no longer has."""
    _rc, live_xml, _err = virsh.run('dumpxml', name)
    try:
        live = avic_domain.audit_domain(live_xml, host, name)
    except avic_domain.DomainXMLError:
        return False
    return bool(set(f['id'] for f in live) - set(f['id'] for f in persistent_findings))


def restart(module, virsh, name):
    timeout = module.params['shutdown_timeout']
    virsh.run('shutdown', name)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if domstate(virsh, name) in ('shut off', 'crashed'):
            break
        time.sleep(2)
    else:
        if not module.params['force_off']:
            module.fail_json(msg='domain %s did not shut down within %d s: it is left running with its old '
                                 'definition (the new one is saved); shut it down yourself, or set '
                                 'force_off: true' % (name, timeout), restart_required=True)
        virsh.run('destroy', name)
    virsh.run('start', name)


def run(module):
    params = module.params
    virsh = Virsh(module)
    name = params['name']
    options = dict((k, params[k]) for k in FIX_OPTIONS)
    options['nested'] = params['nested']
    result = dict(changed=False, findings_before=[], findings_after=[], changes=[], notes=[],
                  active=False, defined=False, restart_required=False, restarted=False, backup=None)
    caps = hv_avic_support(virsh)
    result['hv_avic'] = caps
    host = avic_gather.gather(dmesg=False, guests=False)
    if not host.get('kernel'):
        module.fail_json(msg='cannot read the running kernel release of this host')

    rc, _out, err = virsh.run('dominfo', name, ok_fail=True)
    if rc != 0:
        if 'failed to connect' in (err or '').lower():
            virsh.run('dominfo', name)
        if not params['xml']:
            module.fail_json(msg='domain %r is not defined at %s (virsh dominfo: %s); give its name as '
                                 '"virsh list --all" shows it' % (name, params['uri'], ' '.join(err.split())))
        try:
            root = avic_domain.parse_domain(params['xml'], name)
        except avic_domain.DomainXMLError as exc:
            module.fail_json(msg='xml: %s' % exc)
        if root.findtext('name') != name:
            module.fail_json(msg='xml: the <name> in the XML is %r, not %r' % (root.findtext('name'), name))
        before_xml = params['xml']
        new = True
    else:
        _rc, before_xml, _err = virsh.run('dumpxml', '--inactive', name)
        result['active'] = domstate(virsh, name) == 'running'
        new = False
    try:
        fixed = avic_domain_fix.fix_domain(before_xml, host, options, caps, name)
    except avic_domain_fix.FixOptionError as exc:
        module.fail_json(msg=str(exc))
    except avic_domain.DomainXMLError as exc:
        module.fail_json(msg=str(exc))
    result['findings_before'] = fixed['findings_before']
    result['findings_after'] = fixed['findings_before']
    if params['state'] == 'audited' and not new:
        result['restart_required'] = result['active'] and live_differs(virsh, host, name, fixed['findings_before'])
        return result
    result.update(findings_after=fixed['findings_after'], changes=fixed['changes'], notes=fixed['notes'])
    if not fixed['changed'] and not new:
        result['restart_required'] = result['active'] and live_differs(virsh, host, name, fixed['findings_after'])
        return result
    result['changed'] = True
    result['defined'] = new
    if module._diff:
        result['diff'] = {'before': '' if new else before_xml, 'after': fixed['xml'],
                          'before_header': '%s (persistent)' % name, 'after_header': '%s (persistent)' % name}
    if module.check_mode:
        result['restart_required'] = result['active']
        return result
    if not new:
        directory = params['backup_dir']
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        stamp = time.strftime('%Y%m%dT%H%M%S')
        backup = os.path.join(directory, '%s-%s.xml' % (re.sub(r'[^A-Za-z0-9_.-]', '_', name), stamp))
        with open(backup, 'w') as handle:
            handle.write(before_xml)
        os.chmod(backup, 0o600)
        result['backup'] = backup
    fd, path = tempfile.mkstemp(prefix='vfio-avic-', suffix='.xml')
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(fixed['xml'])
        virsh.run('define', path)
    finally:
        os.unlink(path)
    _rc, after_xml, _err = virsh.run('dumpxml', '--inactive', name)
    result['findings_after'] = avic_domain.audit_domain(after_xml, host, name)
    if result['active']:
        if params['restart']:
            restart(module, virsh, name)
            result['restarted'] = True
        else:
            result['restart_required'] = True
    return result


def main():
    spec = dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='audited', choices=['audited', 'fixed']),
        uri=dict(type='str', default='qemu:///system'),
        xml=dict(type='str'),
        backup_dir=dict(type='path', default='/var/lib/vfio-avic/backups'),
        nested=dict(type='bool', default=False),
        restart=dict(type='bool', default=False),
        force_off=dict(type='bool', default=False),
        shutdown_timeout=dict(type='int', default=180),
    )
    for key in FIX_OPTIONS:
        spec[key] = dict(type='str', default='auto', choices=list(avic_domain_fix.CHOICES[key]))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == '__main__':
    main()
