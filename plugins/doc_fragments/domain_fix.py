# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The fix options of a libvirt domain (module_utils/libvirt/domain_fix.py CHOICES): what
    O(state=fixed) repairs, finding by finding."""

    DOCUMENTATION = r'''
options:
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
    description:
      - C(auto) disables svm only where it keeps AVIC off (kernels 5.6 to 5.18 with C(kvm_amd nested=1)),
        unless O(nested=true); an explicit C(<feature policy='require' name='svm'/>) (nested virtualisation,
        for Windows VBS, WSL2 or Sandbox) is kept wherever it does not inhibit, with a note.
      - C(disable) always disables it; C(keep) leaves it.
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
        C(auto) uses C(avic) where libvirt (8.10 or later) and QEMU (6.2 or later) support it, else C(remove)
        (with a note).
      - On kernels before 5.15 SynIC inhibits AVIC whatever C(<avic state='on'/>) says, so C(auto) removes
        SynIC and stimer there and C(avic) fails, changing nothing.
      - The versions are those of the running daemon and hypervisor (C(virsh version --daemon)). An explicit
        C(avic) on a host that cannot use it fails, naming both versions, and changes nothing.
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
    description:
      - C(auto) switches a named CPU model (or a missing C(<cpu>)) to C(host-passthrough), for
        C(type='kvm') domains only.
    type: str
    choices: [auto, keep]
    default: auto
'''
