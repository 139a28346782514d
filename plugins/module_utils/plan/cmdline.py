# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel arguments the host owns and what a reboot would do with them (stdlib only).

owned_args() and removable_keys() check what may be added and removed (never what the system
boots with); seed_kernel_cmdline() the first /etc/kernel/cmdline; cmdline_decision() whether
the next boot carries the owned arguments the running kernel lacks; cmdline_option_conflicts()
the kvm_amd.* arguments that override the modprobe.d options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.boot.target import KERNEL_CMDLINE_FILE
from ansible_collections.vfio.avic.plugins.module_utils.parse import cmdline as cmdline_parse
from ansible_collections.vfio.avic.plugins.module_utils.parse.cmdline import arg_key, split_args
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError, say
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool

IOMMU_INTR = ('vapic', 'legacy')
# The fields owned_args(), removable_keys(), cmdline_decision() and their errors name.
FIELDS = ('args', 'iommu_intr', 'remove', 'boot_config', 'cmdline_extra')
# Set by the boot loader, not by the user: never copied from /proc/cmdline into a configuration.
BOOT_LOADER_KEYS = ('BOOT_IMAGE', 'initrd')

# Characters an owned argument may not hold: they would need quoting in /etc/default/grub or be
# split by the shell (the kernel itself takes almost anything).
_ARG_FORBIDDEN = ' \t\n"\'\\$`;&|<>()'


# Arguments that find and mount the root file system, unlock it or start init: never added,
# replaced or removed by the collection, whatever it is asked (keys as arg_key() returns them).
BOOT_ARG_KEYS = frozenset((
    'root', 'rootflags', 'rootfstype', 'rootwait', 'rootdelay', 'ro', 'rw', 'init', 'rdinit',
    'resume', 'resume_offset', 'noresume', 'cryptdevice', 'cryptkey', 'boot', 'zfs', 'BOOT_IMAGE',
    'initrd', 'ip', 'nfsroot'))
BOOT_ARG_PREFIXES = ('rd.', 'rd_', 'luks.', 'root.')
# The families of arguments the collection adds and may therefore remove: the IOMMU ones and
# kvm_amd's own module options (kvm-amd.x is kvm_amd.x to the kernel).
OWNED_ARG_KEYS = frozenset(('iommu',))
OWNED_ARG_PREFIXES = ('amd_iommu', 'iommu.', 'kvm_amd.')


def boot_critical(arg):
    """Whether ``arg`` (an argument or a key) is one the system needs to boot."""
    key = arg_key(str(arg).strip())
    return key in BOOT_ARG_KEYS or any(key.startswith(p) for p in BOOT_ARG_PREFIXES)


def owned_family(arg):
    """Whether ``arg`` belongs to a family the collection adds (IOMMU, kvm_amd.*)."""
    key = arg_key(str(arg).strip())
    return key in OWNED_ARG_KEYS or any(key.startswith(p) for p in OWNED_ARG_PREFIXES)


def owned_args(iommu_args=None, iommu_intr=None, extra_args=None):
    """The command-line arguments the role owns, in order, without duplicates.

    An argument that boots the system (``root=``, ``ro``, ``rd.*``, ...) is refused: owning it
    would let the role replace the user's value.
    """
    if iommu_intr and iommu_intr not in IOMMU_INTR:
        raise PlanError('{iommu_intr} must be one of %s, got %r'
                        % (', '.join(IOMMU_INTR), iommu_intr), ('iommu_intr',))
    args = []
    for arg in list(iommu_args or []) + ([('amd_iommu_intr=%s' % iommu_intr)] if iommu_intr else []) \
            + list(extra_args or []):
        arg = str(arg).strip()
        if not arg or any(c in arg for c in _ARG_FORBIDDEN):
            raise PlanError('{args}: %r is not a single kernel argument (no spaces, quotes or '
                            'shell characters)' % (arg,), ('args',))
        if boot_critical(arg):
            raise PlanError('{args}: %r is needed to boot the system and is never managed by this '
                            'collection: remove it from the list (the boot loader keeps the value '
                            'it has)' % (arg,), ('args',))
        args = [a for a in args if arg_key(a) != arg_key(arg)] + [arg]
    return args


def removable_keys(remove, args=()):
    """The keys of ``remove`` (``key`` or ``key=value`` items), checked: only the families the
    collection adds (IOMMU, kvm_amd.*) or the keys of ``args`` may be removed. Raises PlanError
    naming every other one (``root=``, ``rootflags=``, ``ro``, ``rd.*``, ...), so that nothing is
    changed."""
    owned = set(arg_key(a) for a in args or ())
    keys, refused = [], []
    for item in remove or ():
        text = str(item).strip()
        key = arg_key(text)
        if not key or any(c in text for c in _ARG_FORBIDDEN):
            raise PlanError('{remove}: %r is not a kernel argument key' % (item,), ('remove',))
        if boot_critical(key) or not (owned_family(key) or key in owned):
            refused.append(text)
        elif key not in keys:
            keys.append(key)
    if refused:
        raise PlanError(
            '{remove}: %s %s not removed: only the arguments this collection adds '
            '(amd_iommu*, iommu, iommu.*, kvm_amd.*) may be removed, never %s; take %s out of the '
            'list (nothing was changed)' % (
                ', '.join(refused), 'is' if len(refused) == 1 else 'are',
                'an argument the system boots with (root=, rootflags=, ro/rw, init=, resume=, rd.*, '
                'cryptdevice=, ...) or one the user added',
                'it' if len(refused) == 1 else 'them'), ('remove',))
    return keys


def seed_kernel_cmdline(proc_cmdline):
    """The line to seed a missing /etc/kernel/cmdline with: the running command line without the
    arguments the boot loader adds (BOOT_IMAGE=, initrd=). PlanError when nothing would be left
    of the user's arguments (kernel-install would then boot without root=)."""
    words = [w for w in split_args(proc_cmdline) if arg_key(w) not in BOOT_LOADER_KEYS]
    if not words:
        raise PlanError('%s does not exist and /proc/cmdline has no arguments to seed it with: '
                        'write the full kernel command line (root= and the rest) to %s first'
                        % (KERNEL_CMDLINE_FILE, KERNEL_CMDLINE_FILE))
    return ' '.join(words)


def next_boot_line(facts, target=None, line=None):
    """The kernel command line configured for the next boot: ``line`` where the configuration
    was just edited (``target`` is where, as vfio.avic.avic_cmdline reports it), else the facts'
    boot_cmdline; None when no configuration is managed (target none) or it cannot be read."""
    if target:
        return line if target != 'none' else None
    boot = facts.get('boot_cmdline') or {}
    if boot.get('target') in (None, 'none'):
        return None
    return boot.get('value')


def cmdline_decision(running, next_boot, args, remove_keys=(), target=None, names=None):
    """Whether the owned arguments wait for a reboot: {pending, missing, reason}.

    ``pending`` only when the configuration of the next boot carries every owned argument (and
    none of ``remove_keys``) while the running command line lacks one: a reboot then applies them.
    When the next boot would not carry them either (no managed configuration, an override the
    role did not edit), a reboot changes nothing: ``reason`` says so and ``pending`` is False.
    """
    remove = set(arg_key(k) for k in remove_keys) - set(arg_key(a) for a in args)
    words = split_args(running)
    missing = [a for a in args if a not in words] + \
        [w for w in words if arg_key(w) in remove]
    if not missing:
        return {'pending': False, 'missing': [], 'reason': None}
    if next_boot is None:
        return {'pending': False, 'missing': missing, 'reason': (
            'the running kernel command line lacks %s and no boot configuration the role manages '
            'would add it (boot config %s): no reboot; add it to the boot loader by hand or set '
            '%s' % (' '.join(missing), target or 'none', say(names, 'boot_config')))}
    planned = split_args(next_boot)
    lacking = [a for a in args if a not in planned] + [w for w in planned if arg_key(w) in remove]
    if lacking:
        return {'pending': False, 'missing': missing, 'reason': (
            'the running kernel command line lacks %s, and so does the configuration of the next '
            'boot (%s): a reboot would not apply it; no reboot' % (' '.join(missing), ' '.join(lacking)))}
    return {'pending': True, 'missing': missing, 'reason':
            'the kernel command line takes effect at the next boot: %s' % ' '.join(missing)}


def _same_value(first, second):
    one, two = parse_bool(first), parse_bool(second)
    if one is not None and two is not None:
        return one == two
    return str(first) == str(second)


def cmdline_option_conflicts(options, running=None, next_boot=None, names=None):
    """kvm_amd.<option>= arguments of the kernel command line (running, next boot) that set a
    managed option to another value. kmod adds the command line's options after those of
    /etc/modprobe.d, so they win at every load of the module. Returns messages."""
    wanted = dict(options)
    out = []
    for where, line in (('the running kernel command line', running),
                        ('the next boot\'s kernel command line', next_boot)):
        if line is None:
            continue
        found = cmdline_parse.cmdline_module_options(split_args(line))
        for key in sorted(found):
            if key in wanted and not _same_value(found[key], wanted[key]):
                out.append('%s sets kvm_amd.%s=%s, which overrides the managed %s=%s of '
                           'modprobe.d at every load: remove it from the boot configuration (or '
                           'own kvm_amd.%s=%s through %s)'
                           % (where, key, found[key], key, wanted[key], key, wanted[key],
                              say(names, 'cmdline_extra')))
    return out


def edit_needed(facts, args, remove_keys=(), target='auto'):
    """Whether vfio.avic.avic_cmdline has anything to do, judged from the facts' configured line.

    False when the facts answer the question: the line the next boot gets from the configuration
    the module would edit (boot_cmdline: GRUB with its grub.d files, /etc/kernel/cmdline) carries
    every owned argument exactly once and nothing is to be removed, or no configuration is managed
    (target none). True when the line would change or the facts cannot tell: grubby, Proxmox
    without the ESP modes of ``proxmox-boot-tool status`` in the facts, an explicit target other
    than the one found, a missing or unparseable file.
    """
    boot = facts.get('boot_cmdline') or {}
    if boot.get('target') in (None, 'grubby') or target not in ('auto', boot.get('target')):
        return True
    if (facts.get('boot_loader') or {}).get('kind') == 'proxmox-boot-tool' and boot.get('esp_modes') is None:
        return True
    if boot.get('target') == 'none':
        return False
    return cmdline_parse.cmdline_needs_change(boot.get('value'), list(args or []),
                                              [arg_key(r) for r in remove_keys or ()]) is not False
