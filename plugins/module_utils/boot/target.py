# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one boot-target detector: which boot loader a host uses, where its kernel command line is
configured (TARGET_RULE) and what that configuration gives the next boot (stdlib only).

Used by the facts (gather), by avic_cmdline (the file it edits) and by avic_kernel_select (the
boot loader kind). ``files`` is a hostfs.HostFiles; ``run(argv) -> (rc, out, err)`` runs a
read-only command, or is None where no command may run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse
from ansible_collections.vfio.avic.plugins.module_utils.parse import grub_shell

GRUB_DEFAULT_FILE = grub_shell.GRUB_DEFAULT_FILE
KERNEL_CMDLINE_FILE = '/etc/kernel/cmdline'
KERNEL_CMDLINE_DEFAULTS = '/usr/lib/kernel/cmdline'
PROXMOX_UUIDS = '/etc/kernel/proxmox-boot-uuids'
EFI_DIR = '/sys/firmware/efi'
SYSTEMD_BOOT_FILES = ('/boot/loader/loader.conf', '/efi/loader/loader.conf', '/boot/efi/loader/loader.conf')
BLS_ENTRIES = '/boot/loader/entries'
GRUB_CFG_FILES = ('/boot/grub/grub.cfg', '/boot/grub2/grub.cfg')
# The boot tools looked for; a handler of the host role only runs a command found here.
BOOT_TOOLS = ('update-grub', 'grub-mkconfig', 'grub2-mkconfig', 'grubby', 'kernel-install',
              'bootctl', 'proxmox-boot-tool', 'update-bootloader')

TARGET_RULE = (
    'Proxmox VE with /etc/kernel/proxmox-boot-uuids: the ESP modes of "proxmox-boot-tool status" '
    'decide (uefi: systemd-boot reads /etc/kernel/cmdline; grub: /etc/default/grub); without them '
    'a BIOS boot (no /sys/firmware/efi) is GRUB and a UEFI boot is systemd-boot when '
    '/etc/kernel/cmdline exists or /etc/default/grub does not. Elsewhere a systemd-boot '
    'loader.conf means /etc/kernel/cmdline when there is no /etc/default/grub or the host booted '
    'through UEFI; /etc/kernel/cmdline alone means kernel-install; grubby with Boot Loader '
    'Specification entries (/boot/loader/entries, Fedora/RHEL) means grubby; else '
    '/etc/default/grub; else grubby; else none.')


def boot_loader(files):
    """{kind, tools, files}: kind proxmox-boot-tool, systemd-boot, grub or unknown, the boot
    tools installed (BOOT_TOOLS) and which configuration files exist."""
    tools = [t for t in BOOT_TOOLS if files.which(t)]
    found = {
        'default_grub': files.exists(GRUB_DEFAULT_FILE),
        'kernel_cmdline': files.exists(KERNEL_CMDLINE_FILE),
        'grub_cfg': next((p for p in GRUB_CFG_FILES if files.exists(p)), None),
    }
    if files.exists(PROXMOX_UUIDS):
        kind = 'proxmox-boot-tool'
    elif any(files.exists(p) for p in SYSTEMD_BOOT_FILES):
        kind = 'systemd-boot'
    elif found['default_grub'] or found['grub_cfg']:
        kind = 'grub'
    else:
        kind = 'unknown'
    return {'kind': kind, 'tools': tools, 'files': found}


def cmdline_target(exists, has_grubby=False, proxmox_modes=None):
    """Where the kernel command line is configured: kernel_cmdline (systemd-boot, kernel-install,
    Proxmox with systemd-boot), grub (/etc/default/grub), grubby, or none (TARGET_RULE).

    ``exists`` is a path test; ``proxmox_modes`` the set of ESP modes ('uefi', 'grub') read from
    ``proxmox-boot-tool status`` where it could be run, else None.
    """
    grub = exists(GRUB_DEFAULT_FILE)
    efi = exists(EFI_DIR)
    if exists(PROXMOX_UUIDS):
        if proxmox_modes:
            return 'kernel_cmdline' if 'uefi' in proxmox_modes or not grub else 'grub'
        if not efi and grub:
            return 'grub'
        return 'kernel_cmdline' if exists(KERNEL_CMDLINE_FILE) or not grub else 'grub'
    if any(exists(p) for p in SYSTEMD_BOOT_FILES) and (not grub or efi):
        return 'kernel_cmdline'
    if not grub and exists(KERNEL_CMDLINE_FILE):
        return 'kernel_cmdline'
    if has_grubby and exists(BLS_ENTRIES):
        return 'grubby'
    if grub:
        return 'grub'
    return 'grubby' if has_grubby else 'none'


def proxmox_boot_modes(status_output):
    """The ESP modes ('uefi', 'grub') in ``proxmox-boot-tool status`` output
    (lines ``<UUID> is configured with: uefi (versions: ...)``)."""
    modes = set()
    for line in (status_output or '').splitlines():
        match = re.search(r'is configured with:\s*(\w+)', line)
        if match:
            modes.add(match.group(1).lower())
    return modes


def esp_modes(files, run):
    """The ESP modes of ``proxmox-boot-tool status`` (a read-only listing), sorted, on a Proxmox
    host whose tool ran; None where it is not Proxmox, the tool is missing or failed, or no
    command may run (``run`` None: the caller passes one only for the running host)."""
    if run is None or not files.exists(PROXMOX_UUIDS):
        return None
    tool = files.which('proxmox-boot-tool')
    if not tool:
        return None
    rc, out, _err = run([tool, 'status'])
    return sorted(proxmox_boot_modes(out)) if rc == 0 else None


def detect(files, run=None, grubby=None):
    """(target, esp_modes): cmdline_target() of the host, with the Proxmox ESP modes where
    ``run`` may read them; ``grubby`` says whether grubby counts (default: it is installed)."""
    modes = esp_modes(files, run)
    if grubby is None:
        grubby = bool(files.which('grubby'))
    return cmdline_target(files.exists, bool(grubby), set(modes) if modes else None), modes


def next_boot_cmdline(files, run=None):
    """The kernel command line as configured for the next boot, where the host role edits it.

    ``target`` follows detect(), ``value`` is the line the next boot gets from that configuration
    (GRUB: grub_shell.grub_next_boot() over /etc/default/grub and /etc/default/grub.d/*.cfg;
    None where a file is missing or cannot be parsed), ``sources`` the files it came from.
    """
    target, modes = detect(files, run)
    value, sources = None, []
    if target == 'grub':
        def read(path):
            text = files.read(path)
            if text is not None:
                sources.append(path)
            return text
        value = grub_shell.grub_next_boot(read, files.listdir)
    elif target == 'kernel_cmdline':
        text = files.read(KERNEL_CMDLINE_FILE)
        if text is not None:
            value = ' '.join(cmdline_parse.split_args(text))
            sources.append(KERNEL_CMDLINE_FILE)
    return {'target': target, 'value': value, 'sources': sources, 'esp_modes': modes}
