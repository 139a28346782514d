# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make a domain of the fixture corpus bootable in the KVM lab VM (stdlib only).

  python3 lab_domain.py FIXTURE.xml NAME > NAME.xml

Everything the audit reads stays as the fixture has it: <features> (Hyper-V enlightenments,
ioapic), <cpu> (mode, x2apic/svm policies), <clock> (PIT tick policy, timers), <launchSecurity>.
What needs hardware or files this lab does not have is replaced: the guest gets 256 MiB and
one vCPU, boots the payload of `vm.py build --kvm` directly (kernel, busybox initramfs), has
its serial console in a file and no disk, network, graphics, passed-through device, firmware
or extra QEMU arguments.
"""

import sys
import xml.etree.ElementTree as ET

PAYLOAD = '/var/lib/vfio-avic-lab/payload'
QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
KEEP_DEVICES = ('emulator',)
DROP = ('uuid', 'metadata', 'cputune', 'iothreads', 'numatune', 'memoryBacking', 'currentMemory', 'pm',
        '{%s}commandline' % QEMU_NS)


def lab_domain(text, name, idle=3600, memory_mib=256):
    root = ET.fromstring(text)
    if root.tag != 'domain':
        raise ValueError('not a libvirt domain document')
    root.set('type', 'kvm')
    for tag in DROP:
        for element in root.findall(tag):
            root.remove(element)
    root.find('name').text = name
    root.find('memory').attrib = {'unit': 'MiB'}
    root.find('memory').text = str(memory_mib)
    vcpu = root.find('vcpu')
    vcpu.attrib = {'placement': 'static'}
    vcpu.text = '1'
    cpu = root.find('cpu')
    if cpu is not None:
        for element in cpu.findall('topology'):
            cpu.remove(element)
    os_el = root.find('os')
    for element in list(os_el):
        if element.tag != 'type':
            os_el.remove(element)
    os_el.find('type').set('machine', 'q35')
    for tag, text in (('kernel', PAYLOAD + '/vmlinuz'), ('initrd', PAYLOAD + '/initrd.img'),
                      ('cmdline', 'console=ttyS0 quiet panic=-1 payload_idle=%d' % idle)):
        ET.SubElement(os_el, tag).text = text
    devices = root.find('devices')
    for element in list(devices):
        if element.tag not in KEEP_DEVICES:
            devices.remove(element)
    serial = ET.SubElement(devices, 'serial', {'type': 'file'})
    ET.SubElement(serial, 'source', {'path': '/var/log/libvirt/qemu/%s-console.log' % name})
    ET.SubElement(serial, 'target', {'port': '0'})
    ET.SubElement(devices, 'memballoon', {'model': 'none'})
    ET.register_namespace('qemu', QEMU_NS)
    return ET.tostring(root, encoding='unicode') + '\n'


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as handle:
        sys.stdout.write(lab_domain(handle.read(), argv[2]))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
