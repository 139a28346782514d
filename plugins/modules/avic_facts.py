#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_facts
short_description: Gather every AMD AVIC fact of a host in one call
version_added: 0.1.0
description:
  - Reads, in one module call, everything the C(vfio.avic) roles decide on
    and returns it as the C(vfio_avic) fact.
  - CPU classification from C(/proc/cpuinfo) (vendor, Zen generation, SVM, NPT,
    AVIC and x2AVIC flags), kernel release and its AVIC rules, the running
    C(kvm_amd) parameters from sysfs, the C(kvm_amd) options that
    C(/etc/modprobe.d) and the kernel command line configure, IOMMU hints, boot
    loader and initramfs tool, running QEMU guests, libvirt presence and
    version, container detection, and host-level findings.
  - Read-only. Never fails on a non-AMD or unusual host; it reports instead.
  - Commands run only where O(root) is C(/), and only the read-only ones whose tool is installed
    (C(dmesg), C(libvirtd --version), C(virsh) with O(gather_domains), and
    C(proxmox-boot-tool status) on Proxmox VE hosts).
author:
  - vfio.avic maintainers (@vfio-avic)
extends_documentation_fragment:
  - vfio.avic.root
  - vfio.avic.libvirt_uri
options:
  gather_dmesg:
    description:
      - Scan the kernel log for the AVIC and AMD-Vi lines (needs root to read it).
      - When the log cannot be read, C(dmesg) is C(null).
    type: bool
    default: true
  gather_guests:
    description:
      - List running QEMU processes (pid, guest name, whether KVM is used, source), each audited
        from its command line, and on a Proxmox VE node the defined guests, audited from their
        configuration (no extra command runs).
    type: bool
    default: true
  gather_domains:
    description:
      - Also list the defined libvirt domains with their persistent XML (C(virsh dumpxml --inactive)),
        in the same call, for auditing with the C(vfio.avic.domain_avic_issues) filter.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Read-only; works the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
notes:
  - With O(root) other than C(/), no command is run; only files below O(root) are read.
  - O(libvirt_uri) is used with O(gather_domains).
  - Supports check mode.
  - Inside a container the kernel and C(kvm_amd) belong to the container host;
    the C(in_container) finding says so.
seealso:
  - name: AMD64 Architecture Programmer's Manual, Volume 2 (AVIC)
    description: The hardware AVIC feature.
    link: https://www.amd.com/en/support/tech-docs
'''

EXAMPLES = r'''
- name: Gather AVIC facts
  vfio.avic.avic_facts:

- name: Show whether AVIC is active
  ansible.builtin.debug:
    msg: "{{ vfio_avic.status }}: {{ vfio_avic.cpu.message }}"

- name: Fail where something inhibits AVIC for every guest
  ansible.builtin.assert:
    that: vfio_avic.findings | selectattr('severity', 'equalto', 'inhibit') | list | length == 0
    fail_msg: "{{ vfio_avic.findings | selectattr('severity', 'equalto', 'inhibit') | map(attribute='message') | list }}"

- name: Inspect a system image mounted at /mnt/image without running commands
  vfio.avic.avic_facts:
    root: /mnt/image
    gather_dmesg: false
'''

RETURN = r'''
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    vfio_avic:
      description: Every AVIC fact of the host.
      returned: always
      type: dict
      contains:
        schema:
          description: Version of this fact's layout.
          type: int
          sample: 1
        cpu:
          description: CPU classification (see the C(cpu_avic_support) filter).
          type: dict
          sample: {vendor: amd, family: 25, model: 17, microarchitecture: zen4, svm: true,
                   npt: true, avic: true, x2avic: true, status: supported}
        os:
          description: >-
            C(/etc/os-release) C(id), C(id_like), C(version_id), C(codename), the distribution
            C(family) as Ansible names it (C(Debian), C(RedHat), C(Archlinux), C(Suse) or null), and
            C(proxmox) (Proxmox VE tools present).
          type: dict
          sample: {id: debian, id_like: [], version_id: '12', codename: bookworm, family: Debian,
                   proxmox: false}
        kernel:
          description: Running kernel release.
          type: str
          sample: 6.1.0-26-amd64
        kernel_upstream:
          description: Upstream kernel version the distribution reports, if any.
          type: str
          sample: 6.1.112
        kernel_version:
          description: Parsed kernel version (major, minor, patch, distribution).
          type: dict
        kernel_capabilities:
          description: What the kernel can do for AVIC (svm_avic, inkernel_irqchip, x2avic, ...).
          type: dict
        avic:
          description: The running kvm_amd has AVIC on.
          type: bool
        x2avic:
          description: The CPU advertises x2AVIC.
          type: bool
        nested:
          description: The running kvm_amd nested parameter, null when not loaded.
          type: bool
        kvm_amd:
          description: C(loaded) and the raw sysfs C(parameters) of kvm_amd.
          type: dict
          sample: {loaded: true, parameters: {avic: "Y", npt: "Y", nested: "0"}}
        kvm_intel:
          description: C(loaded) and C(enable_apicv) of kvm_intel (Intel hosts).
          type: dict
        modprobe:
          description: >-
            kvm_amd options configured in modprobe.d (C(options), C(sources) per option,
            C(files) and C(lines) that mention kvm_amd, C(blacklisted), C(read)), and
            C(texts), the text of each file that mentions kvm_amd (path to text), from which
            the host role sees that its managed file is already as wanted.
          type: dict
        cmdline:
          description: Kernel command line.
          type: str
        cmdline_kvm_amd:
          description: kvm_amd options given on the kernel command line.
          type: dict
        configured_kvm_amd:
          description: kvm_amd options the next module load uses (modprobe.d, then command line).
          type: dict
        pending:
          description: Options whose configured value differs from the running one.
          type: dict
          sample: {avic: {configured: "1", running: "N"}}
        iommu:
          description: IOMMU command line values and IOMMU units in sysfs.
          type: dict
        boot_loader:
          description: Boot loader C(kind) (grub, systemd-boot, proxmox-boot-tool, unknown), C(tools), C(files).
          type: dict
        boot_cmdline:
          description:
            - The kernel command line configured for the next boot, where the C(vfio.avic.host)
              role edits it.
            - C(target) is where it lives (C(grub), C(kernel_cmdline), C(grubby), C(none)), by the
              rule of C(vfio.avic.avic_cmdline).
            - C(value) is the line the next boot gets from that configuration; for GRUB,
              C(GRUB_CMDLINE_LINUX) then C(GRUB_CMDLINE_LINUX_DEFAULT) as they end after
              C(/etc/default/grub) and the C(/etc/default/grub.d/*.cfg) files, in the order
              C(grub-mkconfig) sources them. Null for C(grubby) and C(none), when
              C(/etc/kernel/cmdline) is missing (kernel-install then falls back to another line),
              and when a GRUB file's quoting cannot be parsed.
            - C(sources) lists the files C(value) came from, in reading order (empty when none).
            - C(esp_modes) lists the ESP modes (C(uefi), C(grub)) that C(proxmox-boot-tool status)
              reports on a Proxmox VE host with C(/etc/kernel/proxmox-boot-uuids); null elsewhere,
              and where the tool is missing, failed, or O(root) is not C(/).
          type: dict
          sample: {target: grub, value: root=/dev/sda1 quiet amd_iommu=on iommu=pt,
                   sources: [/etc/default/grub, /etc/default/grub.d/50-cloudimg-settings.cfg],
                   esp_modes: null}
        kernel_packages:
          description: >-
            Installed C(linux-image-*) packages from the dpkg database (C(package), C(release),
            C(held), C(version)); null where there is no dpkg database.
          type: list
          elements: dict
        initramfs:
          description: Initramfs C(tool), its C(command) and whether kvm_amd is listed in its configuration.
          type: dict
        guests:
          description:
            - Running QEMU processes, each audited from its C(/proc/<pid>/cmdline) with the rules of
              the C(vfio.avic.qemu_avic_issues) filter (the same as the libvirt domain audit).
            - C(pid); C(name) (C(-name)); C(kvm) (runs under KVM); C(source) (C(libvirt) for
              C(-name guest=...) or a pidfile in C(/run/libvirt/qemu), C(proxmox) when
              C(/etc/pve/qemu-server/<vmid>.conf) exists for C(-id <vmid>), else C(qemu));
              C(vmid) (Proxmox VE, else null); C(findings) (C({id, severity, message, fix}), null
              when the command line or the host facts could not be read); C(error).
          type: list
          elements: dict
          sample: [{pid: 4242, name: win, kvm: true, source: proxmox, vmid: 100, error: null,
                    findings: [{id: hyperv_synic, severity: inhibit, message: '...', fix: '...'}]}]
        proxmox_guests:
          description:
            - With O(gather_guests) on a Proxmox VE node, the guests defined in
              C(/etc/pve/qemu-server/*.conf), each audited as qemu-server would start it (the
              C(vfio.avic.proxmox_avic_issues) filter); null elsewhere.
            - C(vmid), C(name), C(running), C(findings) (null when the configuration could not be
              read), C(error).
          type: list
          elements: dict
        libvirt:
          description: Libvirt C(present), C(daemons), C(virsh) path and daemon C(version).
          type: dict
        container:
          description: Container technology the host runs in, or null.
          type: str
        tainted:
          description: Kernel taint mask.
          type: int
        dmesg:
          description:
            - Which AVIC and AMD-Vi kernel log lines were seen, null when not read. Booleans
              C(avic_enabled), C(x2avic_enabled), C(avic_forced), C(force_avic_taint),
              C(avic_snp_hvinusewr), C(x2avic_fw_bug), C(iommu_vapic), C(iommu_intremap),
              C(iommu_vapic_snp_off); C(x2avic_max_vcpus) (6.19+, else null) and C(prefix)
              (C(SVM) before kernel 6.3, C(kvm_amd) from 6.3, null when no AVIC line).
          type: dict
        domains:
          description:
            - With O(gather_domains), the defined domains (C(name), C(active), C(xml), C(error)),
              or null when libvirt could not be asked (see C(domains_error)).
          type: list
          elements: dict
          returned: when O(gather_domains=true)
        domains_error:
          description: Why the domains could not be listed, or null.
          type: str
          returned: when O(gather_domains=true)
        findings:
          description: Host-level findings C({id, severity, message, fix}).
          type: list
          elements: dict
        status:
          description: C(active), C(inactive), C(unsupported) or C(unknown).
          type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils.gather import gather


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather_dmesg=dict(type='bool', default=True),
            gather_guests=dict(type='bool', default=True),
            gather_domains=dict(type='bool', default=False),
            libvirt_uri=dict(type='str', default='qemu:///system'),
            root=dict(type='path', default='/'),
        ),
        supports_check_mode=True,
    )
    root = module.params['root']
    if not os.path.isdir(root):
        module.fail_json(msg='root %r is not a directory: give the directory a system is mounted at, '
                             'or leave root unset for this host' % root)

    def run(argv):
        return module.run_command(argv, check_rc=False, environ_update={'LC_ALL': 'C'})

    facts = gather(root=root, run=run, dmesg=module.params['gather_dmesg'],
                   guests=module.params['gather_guests'], domains=module.params['gather_domains'],
                   libvirt_uri=module.params['libvirt_uri'])
    module.exit_json(changed=False, ansible_facts={'vfio_avic': facts})


if __name__ == '__main__':
    main()
