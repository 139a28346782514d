"""The real-kernel lab: a Debian VM under QEMU software emulation with an AMD CPU that has SVM.

  python3 tests/lab/vm.py build [--kvm [--newest]]    build the disk image (cached; rebuilt when its inputs change)
  python3 tests/lab/vm.py start NAME [--kvm [--newest]]  boot a throw-away copy of it; prints JSON for Ansible
  python3 tests/lab/vm.py stop NAME        stop it by its pid (SIGTERM, then SIGKILL) and remove its files
  python3 tests/lab/vm.py status NAME      print whether it runs
  python3 tests/lab/vm.py check            exit 0 when this machine can run the lab, else say why (exit 3)

The image is built from Debian packages only (debootstrap, linux-image-amd64, grub-pc,
openssh-server, systemd-networkd DHCP) on a partitioned raw disk with GRUB in its MBR, so a newly
installed kernel and the kernel command line are really used at the next boot. An ssh key is made
at build time and kept next to the image (never in the repository). Each start boots a qcow2
overlay of the image with `-accel tcg -cpu EPYC,+svm,+npt`: kvm_amd loads for real inside, AVIC
stays hidden in CPUID (TCG does not emulate it), so force_avic is what turns it on.

The --kvm variant (image debian-SUITE-kvm.raw) adds what real nested KVM guests need, built here
at native speed rather than inside the emulated VM: QEMU, libvirt (daemon, virsh, python3-libvirt)
and a guest payload in /var/lib/vfio-avic-lab/payload: the image's own kernel (vmlinuz) and a
busybox initramfs (initrd.img) whose init says "vfio-avic-payload up", idles for
payload_idle=SECONDS (kernel command line, default 600) and powers the guest off, at once when
the ACPI power button is pressed (so `virsh shutdown` is a graceful shutdown). Boot it with
`-kernel vmlinuz -initrd initrd.img -append "console=ttyS0 payload_idle=30"`.

The --kvm --newest variant (image debian-trixie-kvm-RELEASE.raw) is the --kvm image of
NEWEST_BASE (trixie, whatever VFIO_AVIC_VM_SUITE says) with the newest kernel of the matrix
preinstalled, also at native speed: linux-image-RELEASE from NEWEST_BASE-backports, the way the
kernel role installs it (RELEASE from VFIO_AVIC_VM_NEWEST, default NEWEST_RELEASE). Backports
kernels are built for their own release: trixie-backports' 7.x pulls in a linux-base whose hooks
bookworm's run-parts (debianutils 5.7) cannot run, so they get a trixie image. Its first boot
runs the newest kernel; the payload stays the suite's own kernel. The kernel role installing
that kernel (into the --kvm image of trixie) is what `make kernel-matrix` records.

Run as root. Files live in $VFIO_AVIC_VM_DIR (default: .build/vm in the checkout).
Environment: DEBIAN_MIRROR, VFIO_AVIC_VM_SUITE (default bookworm), VFIO_AVIC_VM_TIMEOUT (boot, 300 s),
VFIO_AVIC_VM_CPUS (vCPUs of the VM, default 2).
"""

import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VM_DIR = os.environ.get('VFIO_AVIC_VM_DIR') or os.path.join(REPO, '.build', 'vm')
SUITE = os.environ.get('VFIO_AVIC_VM_SUITE', 'bookworm')
MIRROR = os.environ.get('DEBIAN_MIRROR', 'http://deb.debian.org/debian')
# the newest Debian kernel of the matrix (also tests/lab/kernel_matrix.py's) and the release it is
# built for (its backports suite carries it)
NEWEST_RELEASE = '7.3.4+deb13-amd64'
NEWEST = os.environ.get('VFIO_AVIC_VM_NEWEST') or NEWEST_RELEASE
NEWEST_BASE = 'trixie'
NEWEST_SUITE = NEWEST_BASE + '-backports'
DISK_MB = 4096
PART_START = 2048  # sectors: 1 MiB, room for GRUB's core image
PACKAGES = ('linux-image-amd64', 'grub-pc', 'openssh-server', 'systemd-sysv',
            'python3', 'python3-apt', 'sudo', 'kmod', 'initramfs-tools', 'ca-certificates', 'procps',
            'iproute2', 'dbus', 'zstd')
QEMU_CPU = 'EPYC,+svm,+npt'
# the --kvm variant: installed with apt inside the image after debootstrap
KVM_PACKAGES = ('qemu-system-x86', 'libvirt-daemon-system', 'libvirt-daemon-driver-qemu',
                'libvirt-clients', 'python3-libvirt', 'busybox-static', 'cpio')
PAYLOAD_DIR = '/var/lib/vfio-avic-lab/payload'
PAYLOAD_INIT = '''#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# the ACPI power button (virsh shutdown) powers the guest off
insmod /lib/button.ko 2>/dev/null
insmod /lib/evdev.ko 2>/dev/null
sleep 1
for dev in /sys/class/input/event*; do
    if [ "$(cat $dev/device/name 2>/dev/null)" = "Power Button" ]; then
        (dd if=/dev/input/${dev##*/} bs=24 count=1 >/dev/null 2>&1
         echo "vfio-avic-payload power button"; poweroff -f) &
    fi
done
echo "vfio-avic-payload up"
sleep "${payload_idle:-600}"
echo "vfio-avic-payload powering off"
poweroff -f
'''
GRUB_DEFAULTS = ('GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR=Debian\n'
                 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX="console=ttyS0,115200 net.ifnames=0"\n'
                 'GRUB_TERMINAL=serial\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n')


def say(text):
    sys.stderr.write('[vm] %s\n' % text)
    sys.stderr.flush()


def run(argv, **kw):
    """Run a command; its output goes to stderr, stdout is kept for the JSON of start."""
    say('$ ' + ' '.join(argv))
    kw.setdefault('stdout', sys.stderr)
    return subprocess.run(argv, check=True, **kw)


def inputs_hash(kvm=False):
    """What the image is made of: the packages, the suite, and the code that builds and configures it."""
    digest = hashlib.sha256()
    digest.update(repr((SUITE, PACKAGES, GRUB_DEFAULTS, DISK_MB, PART_START)).encode())
    functions = [build, configure, install_grub, mbr, write, losetup]
    if kvm:
        digest.update(repr((KVM_PACKAGES, PAYLOAD_DIR, PAYLOAD_INIT)).encode())
        functions.append(configure_kvm)
    for function in functions:
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:16]


def image_paths(kvm=False, newest=False):
    base = 'debian-%s%s%s' % (SUITE, '-kvm' if kvm else '', '-' + NEWEST if newest else '')
    return {'image': os.path.join(VM_DIR, base + '.raw'),
            'stamp': os.path.join(VM_DIR, base + '.inputs'),
            'key': os.path.join(VM_DIR, 'id_ed25519')}


def mbr(total_sectors):
    """A DOS partition table with one bootable Linux partition from PART_START to the end."""
    entry = struct.pack('<B3sB3sII', 0x80, b'\xfe\xff\xff', 0x83, b'\xfe\xff\xff', PART_START,
                        total_sectors - PART_START)
    return entry + b'\x00' * 48 + b'\x55\xaa'


def build(force=False, kvm=False):
    paths = image_paths(kvm)
    wanted = inputs_hash(kvm)
    if not force and os.path.exists(paths['image']) and os.path.exists(paths['stamp']):
        with open(paths['stamp']) as handle:
            if handle.read().strip() == wanted:
                say('image %s is up to date' % paths['image'])
                return paths
    if os.geteuid() != 0:
        sys.exit('vm.py build must run as root (debootstrap, loop devices)')
    os.makedirs(VM_DIR, exist_ok=True)
    start = time.time()
    if not os.path.exists(paths['key']):
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'vfio-avic-lab', '-f', paths['key']])
    tmp = paths['image'] + '.tmp'
    if os.path.exists(tmp):
        os.unlink(tmp)
    with open(tmp, 'wb') as handle:
        handle.truncate(DISK_MB * 1024 * 1024)
        handle.seek(446)
        handle.write(mbr(DISK_MB * 2048))
    # No partition devices are needed: one loop device covers the whole disk (for GRUB's
    # boot sectors), a second one starts at the partition (for the file system).
    disk = losetup(tmp)
    part = losetup(tmp, PART_START * 512)
    mnt = os.path.join(VM_DIR, 'mnt')
    mounted = []
    try:
        run(['mkfs.ext4', '-q', '-L', 'vfio-avic-root', part])
        os.makedirs(mnt, exist_ok=True)
        run(['mount', part, mnt])
        mounted.append(mnt)
        run(['debootstrap', '--variant=minbase', '--include=' + ','.join(PACKAGES), SUITE, mnt, MIRROR])
        configure(mnt, paths['key'] + '.pub')
        for fs, target in (('/dev', 'dev'), ('/proc', 'proc'), ('/sys', 'sys')):
            path = os.path.join(mnt, target)
            run(['mount', '--bind', fs, path])
            mounted.append(path)
        if kvm:
            configure_kvm(mnt)
        install_grub(mnt, disk)
    finally:
        for path in reversed(mounted):
            subprocess.run(['umount', '-l', path], check=False)
        subprocess.run(['losetup', '-d', part], check=False)
        subprocess.run(['losetup', '-d', disk], check=False)
    os.rename(tmp, paths['image'])
    with open(paths['stamp'], 'w') as handle:
        handle.write(wanted + '\n')
    say('built %s in %d s' % (paths['image'], time.time() - start))
    return paths


def losetup(path, offset=0):
    argv = ['losetup', '--find', '--show'] + (['--offset', str(offset)] if offset else []) + [path]
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()


def install_grub(root, disk):
    """GRUB in the MBR gap, booting a minimal grub.cfg; the first boot makes it standard.

    grub-install cannot probe a partition it sees only as a separate loop device, so the image
    is set up with GRUB's own tools from the chroot (grub-mkimage with a fixed prefix, then
    grub-bios-setup with a device map); at the first boot vfio-avic-lab-grub.service runs
    grub-install /dev/vda and update-grub inside the VM, where the disk is a real one.
    """
    moddir = os.path.join(root, 'boot', 'grub', 'i386-pc')
    os.makedirs(moddir, exist_ok=True)
    source = os.path.join(root, 'usr', 'lib', 'grub', 'i386-pc')
    for name in os.listdir(source):
        if name.endswith(('.mod', '.lst', '.img')):
            shutil.copy(os.path.join(source, name), moddir)
    run(['chroot', root, 'grub-mkimage', '-O', 'i386-pc', '-o', '/boot/grub/i386-pc/core.img',
         '-p', '(hd0,msdos1)/boot/grub', 'biosdisk', 'part_msdos', 'ext2'])
    kernels = sorted(n for n in os.listdir(os.path.join(root, 'boot')) if n.startswith('vmlinuz-'))
    if not kernels:
        raise RuntimeError('debootstrap installed no kernel')
    release = kernels[-1][len('vmlinuz-'):]
    write(root, '/boot/grub/grub.cfg',
          'set timeout=1\nserial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n'
          'menuentry "Debian (first boot)" {\n  linux /boot/vmlinuz-%s root=/dev/vda1 ro %s\n'
          '  initrd /boot/initrd.img-%s\n}\n' % (release, 'console=ttyS0,115200 net.ifnames=0', release))
    write(root, '/boot/grub/device.map', '(hd0) %s\n' % disk)
    run(['chroot', root, '/usr/lib/grub/i386-pc/grub-bios-setup', '-s', '-d', '/boot/grub/i386-pc',
         '-m', '/boot/grub/device.map', '(hd0)'])
    os.unlink(os.path.join(root, 'boot', 'grub', 'device.map'))


def write(root, rel, text, mode=0o644):
    path = os.path.join(root, rel.lstrip('/'))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    os.chmod(path, mode)


def configure(root, pubkey):
    with open(pubkey) as handle:
        key = handle.read()
    write(root, '/etc/hostname', 'avic-vm\n')
    write(root, '/etc/hosts', '127.0.0.1 localhost\n127.0.1.1 avic-vm\n')
    write(root, '/etc/fstab', '/dev/vda1 / ext4 errors=remount-ro 0 1\n')
    write(root, '/etc/systemd/system/vfio-avic-lab-grub.service',
          '[Unit]\nDescription=vfio.avic lab: make GRUB standard on the first boot\n'
          'ConditionPathExists=!/var/lib/vfio-avic-lab-grub\nBefore=ssh.service\n\n'
          '[Service]\nType=oneshot\nExecStart=/usr/sbin/grub-install /dev/vda\n'
          'ExecStart=/usr/sbin/update-grub\nExecStart=/usr/bin/touch /var/lib/vfio-avic-lab-grub\n\n'
          '[Install]\nWantedBy=multi-user.target\n')
    write(root, '/etc/default/grub', GRUB_DEFAULTS)
    write(root, '/etc/systemd/network/10-dhcp.network', '[Match]\nName=eth0 en*\n\n[Network]\nDHCP=yes\n')
    write(root, '/root/.ssh/authorized_keys', key, 0o600)
    os.chmod(os.path.join(root, 'root', '.ssh'), 0o700)
    write(root, '/etc/ssh/sshd_config.d/vfio-avic-lab.conf',
          'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n')
    # small initramfs images build much faster under software emulation
    write(root, '/etc/initramfs-tools/conf.d/vfio-avic-lab', 'MODULES=dep\nCOMPRESS=zstd\n')
    write(root, '/etc/apt/apt.conf.d/90vfio-avic-lab',
          'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
    # QEMU's user network answers DNS on 10.0.2.3
    write(root, '/etc/resolv.conf', 'nameserver 10.0.2.3\n')
    for unit in ('systemd-networkd.service', 'ssh.service',
                 'vfio-avic-lab-grub.service'):
        wants = os.path.join(root, 'etc', 'systemd', 'system', 'multi-user.target.wants')
        os.makedirs(wants, exist_ok=True)
        link = os.path.join(wants, unit)
        if not os.path.lexists(link):
            local = os.path.join(root, 'etc', 'systemd', 'system', unit)
            os.symlink(('/etc/systemd/system/%s' if os.path.exists(local) else '/lib/systemd/system/%s') % unit,
                       link)
    # the image has no machine id: each boot of a copy makes its own
    write(root, '/etc/machine-id', '')


def configure_kvm(root):
    """QEMU, libvirt and the guest payload, installed at native speed into the mounted image."""
    resolv = os.path.join(root, 'etc', 'resolv.conf')
    with open(resolv) as handle:
        lab_resolv = handle.read()
    shutil.copyfile('/etc/resolv.conf', resolv)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    try:
        # services must not start inside the chroot
        write(root, '/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755)
        run(['chroot', root, 'apt-get', 'update', '-q'], env=env)
        run(['chroot', root, 'apt-get', 'install', '-y', '-q', '--no-install-recommends'] + list(KVM_PACKAGES),
            env=env)
        run(['chroot', root, 'apt-get', 'clean'], env=env)
        # the packages' triggers rebuilt the initramfs with MODULES=dep for this machine's disk:
        # name the lab VM's root device drivers so that it finds /dev/vda1
        write(root, '/etc/initramfs-tools/modules', 'virtio_pci\nvirtio_blk\next4\n')
        run(['chroot', root, 'update-initramfs', '-u', '-k', 'all'], env=env)
    finally:
        os.unlink(os.path.join(root, 'usr', 'sbin', 'policy-rc.d'))
        with open(resolv, 'w') as handle:
            handle.write(lab_resolv)
    payload = os.path.join(root, PAYLOAD_DIR.lstrip('/'))
    tree = os.path.join(payload, 'tree')
    shutil.rmtree(tree, ignore_errors=True)
    for sub in ('bin', 'sbin', 'usr/bin', 'usr/sbin', 'lib', 'proc', 'sys', 'dev'):
        os.makedirs(os.path.join(tree, sub))
    shutil.copy(os.path.join(root, 'bin', 'busybox'), os.path.join(tree, 'bin', 'busybox'))
    write(tree, '/init', PAYLOAD_INIT, 0o755)
    # the kernel opens /dev/console for init before anything is mounted
    os.mknod(os.path.join(tree, 'dev', 'console'), 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    kernels = sorted(n for n in os.listdir(os.path.join(root, 'boot')) if n.startswith('vmlinuz-'))
    release = kernels[-1][len('vmlinuz-'):]
    for module in ('drivers/acpi/button.ko', 'drivers/input/evdev.ko'):
        source = os.path.join(root, 'lib', 'modules', release, 'kernel', module)
        if os.path.exists(source):  # built in where it is missing
            shutil.copy(source, os.path.join(tree, 'lib'))
    run(['chroot', root, 'sh', '-c', 'cd %s/tree && find . | cpio -o -H newc --quiet | gzip -1 > ../initrd.img'
         % PAYLOAD_DIR])
    shutil.rmtree(tree)
    shutil.copy(os.path.join(root, 'boot', kernels[-1]), os.path.join(payload, 'vmlinuz'))
    # libvirtd starts at boot (socket activation is enough); its default network needs dnsmasq: off
    for link in ('etc/libvirt/qemu/networks/autostart/default.xml',):
        path = os.path.join(root, link)
        if os.path.lexists(path):
            os.unlink(path)


def built_from(paths, wanted):
    """True when the image exists and its stamp names these inputs."""
    if not (os.path.exists(paths['image']) and os.path.exists(paths['stamp'])):
        return False
    with open(paths['stamp']) as handle:
        return handle.read().strip() == wanted


def build_newest(force=False):
    """The --kvm image with linux-image-NEWEST installed: a copy of it, changed at native speed.

    Cached like the others: rebuilt when the --kvm image's inputs, NEWEST, its suite or this
    code change. The copy's first-boot GRUB entry names the newest kernel, so the first boot
    already runs it (the first-boot update-grub makes it the default entry as well).
    """
    base = build(kvm=True)
    paths = image_paths(kvm=True, newest=True)
    digest = hashlib.sha256()
    digest.update(repr((inputs_hash(kvm=True), NEWEST, NEWEST_SUITE, MIRROR)).encode())
    for function in (build_newest, install_newest, built_from, stamped):
        digest.update(inspect.getsource(function).encode())
    wanted = digest.hexdigest()[:16]
    if not force and built_from(paths, wanted):
        say('image %s is up to date' % paths['image'])
        return paths
    if os.geteuid() != 0:
        sys.exit('vm.py build must run as root (loop devices, chroot)')
    start = time.time()
    tmp = paths['image'] + '.tmp'
    run(['cp', '--sparse=always', base['image'], tmp])
    part = losetup(tmp, PART_START * 512)
    mnt = os.path.join(VM_DIR, 'mnt')
    mounted = []
    try:
        os.makedirs(mnt, exist_ok=True)
        run(['mount', part, mnt])
        mounted.append(mnt)
        for fs, target in (('/dev', 'dev'), ('/proc', 'proc'), ('/sys', 'sys')):
            path = os.path.join(mnt, target)
            run(['mount', '--bind', fs, path])
            mounted.append(path)
        grub_cfg = os.path.join(mnt, 'boot', 'grub', 'grub.cfg')
        with open(grub_cfg) as handle:
            first_boot = handle.read()
        booted = re.search(r'/boot/vmlinuz-(\S+)', first_boot).group(1)
        install_newest(mnt)
        write(mnt, '/boot/grub/grub.cfg', first_boot.replace(booted, NEWEST))
    finally:
        for path in reversed(mounted):
            subprocess.run(['umount', '-l', path], check=False)
        subprocess.run(['losetup', '-d', part], check=False)
    return stamped(tmp, paths, wanted, start)


def stamped(tmp, paths, wanted, start):
    """The finished image in its place, with the stamp of its inputs."""
    os.rename(tmp, paths['image'])
    with open(paths['stamp'], 'w') as handle:
        handle.write(wanted + '\n')
    say('built %s in %d s' % (paths['image'], time.time() - start))
    return paths


def install_newest(root):
    """linux-image-NEWEST from NEWEST_SUITE, installed at native speed into the mounted image."""
    write(root, '/etc/apt/sources.list.d/vfio-avic-newest.list', 'deb %s %s main\n' % (MIRROR, NEWEST_SUITE))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    # the host's name servers for apt, the lab's (QEMU user networking) again afterwards
    resolv = os.path.join(root, 'etc', 'resolv.conf')
    with open(resolv) as handle:
        lab_resolv = handle.read()
    shutil.copyfile('/etc/resolv.conf', resolv)
    try:
        write(root, '/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755)
        run(['chroot', root, 'apt-get', 'update', '-q'], env=env)
        run(['chroot', root, 'apt-get', 'install', '-y', '-q', '--no-install-recommends', '-t', NEWEST_SUITE,
             'linux-image-' + NEWEST], env=env)
        run(['chroot', root, 'apt-get', 'clean'], env=env)
    finally:
        os.unlink(os.path.join(root, 'usr', 'sbin', 'policy-rc.d'))
        with open(resolv, 'w') as handle:
            handle.write(lab_resolv)
    if not os.path.exists(os.path.join(root, 'boot', 'vmlinuz-' + NEWEST)):
        raise RuntimeError('linux-image-%s installed no /boot/vmlinuz-%s' % (NEWEST, NEWEST))


def instance_dir(name):
    if not name.replace('-', '').replace('_', '').isalnum():
        sys.exit('instance name %r: use letters, digits, - and _' % name)
    return os.path.join(VM_DIR, 'instances', name)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def ssh_ready(port, key):
    probe = subprocess.run(['ssh', '-i', key, '-p', str(port), '-o', 'BatchMode=yes',
                            '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
                            '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR', 'root@127.0.0.1', 'true'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return probe.returncode == 0


def is_our_qemu(pid, name):
    """True when pid is the QEMU process of this instance (a reused pid is not)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
    except (IOError, OSError):
        return False
    return bool(argv) and b'qemu-system' in os.path.basename(argv[0]) and \
        ('vfio-avic-' + name).encode() in argv


def pid_of(name):
    path = os.path.join(instance_dir(name), 'qemu.pid')
    try:
        with open(path) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
    except (IOError, OSError, ValueError):
        return None
    return pid if is_our_qemu(pid, name) else None


CONSOLE_TAIL = 4000


def console_tail(name, size=CONSOLE_TAIL):
    """The last characters of an instance's serial console log ('' when there is none)."""
    try:
        with open(os.path.join(instance_dir(name), 'console.log'), errors='replace') as handle:
            return handle.read()[-size:]
    except IOError:
        return ''


def start(name, memory=2048, cpus=None, kvm=False, newest=False):
    cpus = cpus or int(os.environ.get('VFIO_AVIC_VM_CPUS', '2'))
    paths = build_newest() if newest else build(kvm=kvm)
    inst = instance_dir(name)
    running = pid_of(name)
    if running:
        sys.exit('instance %s already runs (pid %s): stop it first' % (name, running))
    shutil.rmtree(inst, ignore_errors=True)
    os.makedirs(inst)
    disk = os.path.join(inst, 'disk.qcow2')
    run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', paths['image'], '-F', 'raw', disk])
    port = free_port()
    console = os.path.join(inst, 'console.log')
    run(['qemu-system-x86_64', '-name', 'vfio-avic-' + name, '-accel', 'tcg', '-cpu', QEMU_CPU,
         '-m', str(memory), '-smp', str(cpus), '-drive', 'file=%s,format=qcow2,if=virtio' % disk,
         '-nic', 'user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:22' % port,
         '-display', 'none', '-serial', 'file:' + console, '-monitor', 'none',
         '-daemonize', '-pidfile', os.path.join(inst, 'qemu.pid')])
    timeout = int(os.environ.get('VFIO_AVIC_VM_TIMEOUT', '300'))
    deadline = time.time() + timeout
    began = time.time()
    while time.time() < deadline:
        if not pid_of(name):
            break
        if ssh_ready(port, paths['key']):
            info = {'instance': name, 'address': '127.0.0.1', 'port': port, 'user': 'root',
                    'identity_file': paths['key'], 'pid': pid_of(name), 'console': console,
                    'boot_seconds': round(time.time() - began, 1)}
            with open(os.path.join(inst, 'instance.json'), 'w') as handle:
                json.dump(info, handle)
            print(json.dumps(info))
            return info
        time.sleep(3)
    say('the VM did not answer ssh within %d s; its console log follows' % timeout)
    sys.stderr.write(console_tail(name, 6000))
    stop(name, show_console=False)
    sys.exit('VM %s did not come up in %d s' % (name, timeout))


def stop(name, show_console=True):
    """Stop the instance's QEMU by its pid and remove its files.

    The console log goes with them, so its tail is shown first (a converge that failed on a
    reboot is explained by it) and the whole log is kept as <name>-console.log in the lab dir.
    """
    tail = console_tail(name)
    if tail and show_console:
        say('last lines of the %s console:' % name)
        sys.stderr.write(tail + '\n')
    if tail:
        shutil.copyfile(os.path.join(instance_dir(name), 'console.log'),
                        os.path.join(os.path.dirname(instance_dir(name)), '%s-console.log' % name))
    pid = pid_of(name)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(50):
            if not pid_of(name):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        say('stopped %s (pid %s)' % (name, pid))
    shutil.rmtree(instance_dir(name), ignore_errors=True)


def missing_requirements():
    """Why this machine cannot run the VM lab (empty when it can)."""
    why = []
    if os.geteuid() != 0:
        why.append('not root')
    for tool in ('qemu-system-x86_64', 'qemu-img', 'debootstrap', 'losetup', 'mkfs.ext4', 'ssh',
                 'ssh-keygen'):
        if not shutil.which(tool):
            why.append('%s is not installed' % tool)
    if not os.path.exists('/dev/loop-control'):
        why.append('no loop devices (/dev/loop-control)')
    return why


def main(argv):
    if len(argv) >= 2 and argv[1] == 'check':
        why = missing_requirements()
        if why:
            sys.stderr.write('the VM lab cannot run here: %s\n' % '; '.join(why))
            return 3
        return 0
    if len(argv) < 2 or argv[1] not in ('build', 'start', 'stop', 'status'):
        sys.stderr.write(__doc__)
        return 2
    command = argv[1]
    kvm = '--kvm' in argv
    newest = '--newest' in argv
    if newest and not kvm:
        sys.stderr.write('--newest is a variant of the --kvm image: give both\n')
        return 2
    if newest:
        # the newest kernel's image is always of the release that kernel is built for
        global SUITE
        SUITE = NEWEST_BASE
    argv = [a for a in argv if a not in ('--kvm', '--base', '--newest')]
    if command == 'build':
        if newest:
            build_newest(force='--force' in argv)
        else:
            build(force='--force' in argv, kvm=kvm)
        return 0
    if len(argv) < 3:
        sys.stderr.write('vm.py %s needs an instance name\n' % command)
        return 2
    if command == 'start':
        start(argv[2], kvm=kvm, newest=newest)
    elif command == 'stop':
        stop(argv[2])
    else:
        pid = pid_of(argv[2])
        print(json.dumps({'instance': argv[2], 'running': bool(pid), 'pid': pid}))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
