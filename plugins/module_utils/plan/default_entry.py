# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The default boot entry of a kernel, per distribution and boot loader (stdlib only): the OS
name grub-mkconfig puts in menu titles (GRUB_DISTRIBUTOR, os-release), the GRUB saved-entry
path or the grubby kernel image."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re


def grub_distributor(default_grub_text):
    """GRUB_DISTRIBUTOR of /etc/default/grub when it is a literal string; None when unset, empty,
    or computed by the shell (Debian's `lsb_release -i -s`), where the distribution default applies."""
    value = None
    for line in (default_grub_text or '').splitlines():
        match = re.match(r'^\s*GRUB_DISTRIBUTOR=(.*)$', line)
        if match:
            value = match.group(1).strip()
    if value is None:
        return None
    if value[:1] in ('"', "'") and value[-1:] == value[:1]:
        value = value[1:-1]
    if not value or any(c in value for c in '`$'):
        return None
    return value


def grub_os_name(dist, os_release=None, distributor=None):
    """The OS name grub-mkconfig's 10_linux puts in menu titles, per distribution.

    Upstream: '<GRUB_DISTRIBUTOR> GNU/Linux'; Debian patches Ubuntu to 'Ubuntu'; Arch builds
    10_linux with 'GNU/Linux' replaced by 'Linux' (GRUB_DISTRIBUTOR="Arch": 'Arch Linux');
    openSUSE drops ' GNU/Linux' and, with GRUB_DISTRIBUTOR empty, takes NAME and VERSION of
    os-release ('openSUSE Leap 15.6', 'openSUSE Tumbleweed', which has no VERSION).
    """
    os_release = os_release or {}
    if dist == 'debian':
        return '%s GNU/Linux' % (distributor or 'Debian')
    if dist == 'ubuntu':
        name = distributor or 'Ubuntu'
        return name if name in ('Ubuntu', 'Kubuntu') else '%s GNU/Linux' % name
    if dist == 'Archlinux':
        return '%s Linux' % (distributor or 'Arch')
    if dist == 'Suse':
        if distributor:
            return distributor
        name, version = os_release.get('NAME'), os_release.get('VERSION')
        if name:
            return '%s %s' % (name, version) if version else name
        return 'openSUSE'
    return '%s GNU/Linux' % distributor if distributor else 'GNU/Linux'


def default_entry(dist, boot_loader, release, os_name=None, image=None):
    """How ``release`` becomes the default boot entry: {kind, entry, needs_saved_default} or None.

    ``grub``: the saved entry is the menu path 'Advanced options for OS>OS, with Linux V', where V
    is the kernel image name after 'vmlinuz-' (the release; on Arch the package name, since
    /boot/vmlinuz-linux gives 'Arch Linux, with Linux linux'); it needs GRUB_DEFAULT=saved.
    ``grubby`` (Fedora/RHEL) names the kernel image. Proxmox's `proxmox-boot-tool kernel pin`
    already selects it. The tools (grub-set-default, grub2-set-default, grubby) are in
    roles/kernel/vars/main.yml, per OS family.
    """
    if not release or dist == 'proxmox' or boot_loader not in ('grub', 'grubby'):
        return None
    if dist == 'RedHat':
        return {'kind': 'grubby', 'entry': '/boot/vmlinuz-%s' % release, 'needs_saved_default': False}
    name = os_name or grub_os_name(dist)
    version = image if (dist == 'Archlinux' and image) else release
    return {'kind': 'grub', 'entry': 'Advanced options for %s>%s, with Linux %s' % (name, name, version),
            'needs_saved_default': True}
