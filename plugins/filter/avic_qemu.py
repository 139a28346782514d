# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AVIC audit filters for guests that libvirt does not run: QEMU command lines and Proxmox VE
guest configurations; both run the rules of the libvirt domain audit."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox as proxmox_guest
from ansible_collections.vfio.avic.plugins.module_utils.guests import qemu as qemu_guest
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host


def qemu_avic_issues(qemu_argv, host):
    """Findings for a QEMU command line (list of arguments, or /proc/<pid>/cmdline text)."""
    try:
        return qemu_guest.audit_qemu(qemu_argv, host)
    except (qemu_guest.QemuArgvError, domain_host.HostFactsError) as exc:
        raise AnsibleFilterError('vfio.avic.qemu_avic_issues: %s' % exc)


def proxmox_avic_issues(qm_conf_text, host, vmid=None, cpu_models=None):
    """Findings for the text of a Proxmox VE /etc/pve/qemu-server/<vmid>.conf."""
    try:
        return proxmox_guest.audit_proxmox(qm_conf_text, host, vmid, cpu_models)
    except (proxmox_guest.ProxmoxConfigError, qemu_guest.QemuArgvError,
            domain_host.HostFactsError) as exc:
        raise AnsibleFilterError('vfio.avic.proxmox_avic_issues: %s' % exc)


class FilterModule(object):
    def filters(self):
        return {
            'qemu_avic_issues': qemu_avic_issues,
            'proxmox_avic_issues': proxmox_avic_issues,
        }
