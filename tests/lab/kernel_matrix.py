# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record how each kernel of the matrix treats AVIC, with real KVM guests (run as root).

  python3 tests/lab/kernel_matrix.py [--out DIR] [LABEL ...]

Boots one KVM lab VM (vm.py start --kvm) per Debian release of the matrix (bookworm; trixie for
the newest kernel), and for each kernel (default: every label of KERNELS but the prebuilt one,
oldest first) lets the kernel role install it and reboot into it, runs tests/lab/kvm_probe.py
there and fetches the recording to DIR/<release>/ (default tests/fixtures/kernels). The VM is
stopped by its pid at the end, also after a failure. `make kernel-matrix` runs it; the
recordings are what tests/unit/test_kernel_fixtures.py checks the collection's tables against.

`make kernel-probe` (part of `make test`) runs the labels `bookworm` and `newest` into a scratch
DIR: the oldest kernel (the bookworm image's own) and the newest (`newest`: the image of `vm.py build --kvm --newest`, where
that kernel is preinstalled at native speed, so no kernel is installed under emulation), then
checks the fresh recordings with the same tests and against the stored ones of their series.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import vm  # noqa: E402  (the lab's own image tool: its NEWEST is the newest kernel of the matrix)

# label -> what the matrix playbook does for it (tests/lab/matrix/kernel-probe.yml)
KERNELS = (
    {'label': 'bookworm'},  # the image's own kernel (6.1)
    {'label': 'bookworm-backports',
     'role': {'avic_kernel_mode': 'latest', 'avic_kernel_backports': True}},
    # backports kernels are built for their own release (vm.py says why): the newest one is
    # installed into a trixie VM, from its own backports as a user would
    {'label': vm.NEWEST_SUITE, 'image': vm.NEWEST_BASE,
     'role': {'avic_kernel_mode': 'version', 'avic_kernel_backports': True,
              'avic_kernel_version': os.environ.get('MATRIX_NEWEST') or vm.NEWEST}},
    # the same newest kernel, preinstalled in its image at native speed (vm.py --kvm --newest):
    # the quick probe of make test; not re-recorded by default (the label above records it)
    {'label': 'newest', 'image': vm.NEWEST_BASE, 'newest': True, 'default': False},
)
INSTANCE = 'matrix'


def inventory(info, path):
    host = ('avic-matrix ansible_host=%(address)s ansible_port=%(port)s ansible_user=%(user)s '
            'ansible_ssh_private_key_file=%(identity_file)s' % info)
    with open(path, 'w') as handle:
        handle.write('[all]\n%s\n[all:vars]\nansible_ssh_common_args=-o StrictHostKeyChecking=no '
                     '-o UserKnownHostsFile=/dev/null -o ServerAliveInterval=5 -o ServerAliveCountMax=4\n'
                     'ansible_python_interpreter=/usr/bin/python3\n' % host)


def main(argv):
    out = os.path.join(REPO, 'tests', 'fixtures', 'kernels')
    labels = []
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg == '--out' and args:
            out = os.path.abspath(args.pop(0))
        elif arg.startswith('-'):
            sys.stderr.write(__doc__)
            return 2
        else:
            labels.append(arg)
    known = [k['label'] for k in KERNELS]
    unknown = [label for label in labels if label not in known]
    if unknown:
        sys.stderr.write('unknown kernel label(s) %s; known: %s\n' % (', '.join(unknown), ', '.join(known)))
        return 2
    kernels = [k for k in KERNELS if k['label'] in labels or (not labels and k.get('default', True))]
    for kernel in kernels:
        if kernel.get('role', {}).get('avic_kernel_mode') == 'version' and \
                not kernel['role'].get('avic_kernel_version'):
            sys.stderr.write('%s needs the kernel release to install: set MATRIX_NEWEST (e.g. the '
                             'release of linux-image-amd64 in %s)\n' % (kernel['label'], kernel['label']))
            return 2
    os.makedirs(out, exist_ok=True)
    began = time.time()
    try:
        for image in sorted(set(image_of(k) for k in kernels), key=lambda i: (i[0] != vm.SUITE, i)):
            rc = matrix_on(image, [k for k in kernels if image_of(k) == image], out)
            if rc:
                return rc
        return 0
    finally:
        sys.stderr.write('kernel matrix: %d s\n' % (time.time() - began))


def image_of(kernel):
    """(Debian release, whether it is the image with the newest kernel preinstalled)"""
    return kernel.get('image', vm.SUITE), bool(kernel.get('newest'))


def matrix_on(image, kernels, out):
    """Boot one KVM lab VM of that image and run the matrix playbook for its kernels."""
    vm_py = [sys.executable, os.path.join(HERE, 'vm.py')]
    image, newest = image
    instance = '%s-%s%s' % (INSTANCE, image, '-newest' if newest else '')
    # the first boot of a copy runs grub-install and update-grub under emulation
    env = dict(os.environ, VFIO_AVIC_VM_SUITE=image,
               VFIO_AVIC_VM_TIMEOUT=os.environ.get('VFIO_AVIC_VM_TIMEOUT', '600'))
    began = time.time()
    started = subprocess.run(vm_py + ['start', instance, '--kvm'] + (['--newest'] if newest else []), stdout=subprocess.PIPE, env=env,
                             universal_newlines=True, check=False)
    try:
        if started.returncode != 0:
            return started.returncode
        info = json.loads(started.stdout.strip().splitlines()[-1])
        with tempfile.TemporaryDirectory() as tmp:
            hosts = os.path.join(tmp, 'hosts')
            inventory(info, hosts)
            env.update(MATRIX_OUT=out, MATRIX_KERNELS=json.dumps(kernels),
                       ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.build', 'collections'),
                       ANSIBLE_HOST_KEY_CHECKING='False')
            # the ansible-playbook of this Python's environment (the checkout's .venv)
            playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
            play = subprocess.run([playbook if os.path.exists(playbook) else 'ansible-playbook', '-i', hosts,
                                   os.path.join(HERE, 'matrix', 'kernel-matrix.yml')], env=env, check=False)
            return play.returncode
    finally:
        subprocess.run(vm_py + ['stop', instance], env=env, check=False)
        sys.stderr.write('kernel matrix on %s%s: %d s\n' % (image, ' (newest image)' if newest else '', time.time() - began))


if __name__ == '__main__':
    sys.exit(main(sys.argv))
