# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the host role does to a host, decided from its vfio_avic fact (stdlib only).

preflight() says whether to configure, stop or only report; wanted_options() the kvm_amd
options; modprobe_text(), conflicts() and comment_conflicts() the managed file and the other
modprobe.d files; cmdline_target() where the kernel command line lives (TARGET_RULE);
edit_grub_files() (/etc/default/grub and its grub.d files, token by token in the shell values),
edit_cmdline() and seed_kernel_cmdline() the line itself, touching only the arguments the
collection owns; cmdline_decision() and activation() whether a reboot would apply anything;
final_state() the avic_host_status after activation; reboot_guard() whether the host may go
down with the guests that run right now.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils.rules import host as host_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules

MANAGED_HEADER = ('# Managed by Ansible (vfio.avic.host): kvm_amd options for AVIC.\n'
                  '# Local changes are overwritten; set avic_host_* variables instead.\n')
GRUB_VARIABLE = 'GRUB_CMDLINE_LINUX_DEFAULT'
IOMMU_INTR = ('vapic', 'legacy')


class PlanError(ValueError):
    """An input the user must fix (named in the message)."""


# --- preflight -------------------------------------------------------------------------------

def preflight(facts, force_avic=False, allow_no_svm=False, allow_old_kernel=False,
              refuse_known_issues=False, enabled=True):
    """Decide from the vfio_avic fact: {action, state, reasons, warnings}.

    action is ``configure`` (write the AMD settings), ``report`` (nothing to do here: Intel or
    unknown vendor; the report says why) or ``stop`` (fail this host with the reasons).
    ``enabled=False`` (AVIC off on purpose) configures avic=0 whatever the CPU offers.
    """
    if force_avic and not enabled:
        raise PlanError('avic_host_force_avic: true and avic_host_enabled: false contradict each '
                        'other: force_avic turns AVIC on; set one of them')
    cpu = facts.get('cpu') or {}
    status = cpu.get('status')
    reasons, warnings = [], []
    if cpu.get('vendor') in ('intel', 'unknown') or status == 'unsupported_vendor':
        apicv = (facts.get('kvm_intel') or {}).get('enable_apicv')
        if cpu.get('vendor') == 'intel':
            reasons.append('Intel CPU: AVIC is AMD-only; kvm_intel APICv is %s.' % (
                'on' if apicv else 'off' if apicv is False else 'unknown (kvm_intel not loaded)'))
        else:
            reasons.append(cpu.get('message') or 'The CPU vendor is not AMD or Hygon.')
        return {'action': 'report', 'state': 'unsupported', 'reasons': reasons, 'warnings': []}
    if status == 'svm_unavailable' and not allow_no_svm:
        reasons.append('%s Enable SVM (AMD-V) in the firmware setup, or nested SVM on the '
                       'hypervisor if this host is a VM; set avic_host_allow_no_svm: true to '
                       'configure the files anyway.' % (cpu.get('message') or 'SVM is not available.'))
        return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
    if status == 'cpuid_hidden' and enabled:
        if not force_avic:
            reasons.append(
                '%s AVIC can only be turned on with kvm_amd force_avic=1, which is unsupported by '
                'AMD and taints the kernel; set avic_host_force_avic: true to accept that.'
                % (cpu.get('message') or 'The CPU does not advertise AVIC in CPUID.'))
            return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
        warnings.append('force_avic=1 is set: AVIC runs although CPUID does not advertise it; '
                        'unsupported, and the kernel is tainted (flag 64).')
    if status == 'no_avic_hardware' and enabled:
        reasons.append('%s Keep AVIC off here (avic_host_enabled: false) or leave this host out; '
                       'avic_host_force_avic cannot help.'
                       % (cpu.get('message') or 'The CPU has no AVIC hardware.'))
        return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
    if status == 'vm_no_avic' and enabled:
        if not force_avic:
            reasons.append('%s For testing only, set avic_host_force_avic: true to accept that.'
                           % (cpu.get('message') or 'This VM has no AVIC.'))
            return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
        warnings.append('force_avic=1 is set in a VM without AVIC: for testing only; unsupported, '
                        'the kernel is tainted (flag 64) and there is no real acceleration.')
    release = facts.get('kernel')
    erratum = host_rules.erratum_1235_finding(
        cpu, release, (facts.get('kvm_amd') or {}).get('parameters')) if enabled else None
    if erratum and erratum['severity'] == 'warning':
        warnings.append('%s %s' % (erratum['message'], erratum['fix']))
    if release:
        try:
            issues = kernel_rules.kernel_issues(release, facts.get('kernel_upstream'))
        except kernel_rules.KernelReleaseError as exc:
            issues = []
            warnings.append(str(exc))
        for item in issues:
            if item['id'] == 'kernel_too_old' and not allow_old_kernel:
                reasons.append('%s Install a newer kernel (vfio.avic.kernel), or set '
                               'avic_host_allow_old_kernel: true.' % item['message'])
            elif item['id'] == 'kernel_known_issue' and refuse_known_issues:
                reasons.append('%s Set avic_host_refuse_known_issues: false to go on.' % item['message'])
            elif item['severity'] != 'info':
                warnings.append(item['message'])
    if reasons:
        return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': warnings}
    return {'action': 'configure', 'state': None, 'reasons': [], 'warnings': warnings}


# --- kvm_amd options -------------------------------------------------------------------------

_OPTION_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
_OPTION_VALUE = re.compile(r'^[A-Za-z0-9_.,:+-]+$')


def _value(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    return str(value)


# The kvm_amd options the collection decides itself; each has its own variable.
MANAGED_OPTIONS = {'avic': 'avic_host_enabled', 'npt': None, 'nested': 'avic_host_nested',
                   'force_avic': 'avic_host_force_avic'}


def wanted_options(force_avic=False, nested=False, extra=None, avic=True):
    """The kvm_amd options to write, as an ordered list of (name, value) strings.

    ``avic=False`` writes avic=0 (AVIC off on purpose; from 6.18 avic=auto turns it on by itself
    on Zen 4 or later CPUs with x2AVIC, AVIC in CPUID and nested paging). The managed options cannot be set through ``extra``: a second value would
    silently win over the first.
    """
    if force_avic and not avic:
        raise PlanError('avic_host_force_avic: true and avic_host_enabled: false contradict each '
                        'other: force_avic turns AVIC on; set one of them')
    options = [('avic', '1' if avic else '0'), ('npt', '1'), ('nested', _value(bool(nested)))]
    if force_avic:
        options.append(('force_avic', '1'))
    for name, value in sorted((extra or {}).items()):
        key = host_rules.module_name(str(name))
        text = _value(value)
        if not _OPTION_NAME.match(key):
            raise PlanError('avic_host_extra_options: %r is not a kvm_amd parameter name '
                            '(letters, digits and underscores)' % (name,))
        if key in MANAGED_OPTIONS:
            variable = MANAGED_OPTIONS[key]
            raise PlanError('avic_host_extra_options: %s is managed by this collection and cannot be '
                            'set here (it would override the managed value); %s' % (
                                key, ('use %s instead' % variable) if variable else
                                'AVIC needs npt=1, so it is always written'))
        if not _OPTION_VALUE.match(text):
            raise PlanError('avic_host_extra_options: the value %r of %s has characters modprobe '
                            'does not take (no spaces or quotes)' % (text, key))
        options = [(k, v) for k, v in options if k != key] + [(key, text)]
    return options


def modprobe_text(options):
    """The managed modprobe.d file for ``options`` [(name, value)]."""
    return MANAGED_HEADER + 'options kvm_amd %s\n' % ' '.join('%s=%s' % kv for kv in options)


def conflicts(files, managed_path, options):
    """kvm_amd settings in other modprobe.d files that fight the managed file.

    ``files`` are the (path, text) pairs in kmod's reading order. A file read after the managed
    one overrides it; one read before is overridden but still confuses readers: both are
    reported, with the option, the value and whether it wins.
    """
    wanted = dict(options)
    order = [path for path, _text in files]
    position = order.index(managed_path) if managed_path in order else None
    out = []
    for path, text in files:
        if path == managed_path:
            continue
        parsed = host_rules.parse_modprobe([(path, text)])
        if parsed['blacklisted']:
            out.append({'path': path, 'option': None, 'value': None, 'wins': True,
                        'message': '%s blacklists kvm_amd' % path})
        for command in parsed['install']:
            keeps = '--ignore-install' in command and '$CMDLINE_OPTS' in command
            out.append({'path': path, 'option': None, 'value': None, 'wins': not keeps,
                        'message': '%s replaces loading kvm_amd with the command "%s"%s' % (
                            path, command, ' (it loads kvm_amd with the configured options)' if keeps
                            else ': the managed options apply only if that command loads kvm_amd '
                                 'with $CMDLINE_OPTS; review it by hand (it is never commented out)')})
        for key, value in sorted(parsed['options'].items()):
            if key in wanted and str(value) != wanted[key]:
                wins = position is None or order.index(path) > position
                out.append({'path': path, 'option': key, 'value': value, 'wins': wins,
                            'message': '%s sets kvm_amd %s=%s (%s)' % (
                                path, key, value,
                                'read after the managed file: it wins' if wins else
                                'read before the managed file: overridden')})
    return out


def comment_conflicts(text, keys):
    """Comment out the kvm_amd ``options`` lines of ``text`` that set one of ``keys``.

    A line that also sets other options keeps them on a new line. Returns the new text.
    """
    out = []
    group = []
    for line in text.splitlines(True):
        group.append(line)
        if line.rstrip('\r\n').endswith('\\'):
            continue  # a continued line: the logical line goes on below
        logical = ' '.join(g.rstrip('\r\n')[:-1] if g.rstrip('\r\n').endswith('\\') else g
                           for g in group)
        words = logical.split()
        if len(words) >= 2 and words[0] == 'options' and host_rules.module_name(words[1]) == 'kvm_amd':
            kept = [w for w in words[2:] if host_rules.module_name(w.partition('=')[0]) not in keys]
            if len(kept) != len(words) - 2:
                # every physical line of the logical one, so no continuation survives half-commented
                out.extend('# %s  # disabled by vfio.avic.host\n' % g.rstrip('\r\n').rstrip('\\').rstrip()
                           for g in group)
                if kept:
                    out.append('options %s %s\n' % (words[1], ' '.join(kept)))
                group = []
                continue
        out.extend(group)
        group = []
    out.extend(group)
    return ''.join(out)


# --- kernel command line ---------------------------------------------------------------------

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
        raise PlanError('avic_host_iommu_intr must be one of %s, got %r'
                        % (', '.join(IOMMU_INTR), iommu_intr))
    args = []
    for arg in list(iommu_args or []) + ([('amd_iommu_intr=%s' % iommu_intr)] if iommu_intr else []) \
            + list(extra_args or []):
        arg = str(arg).strip()
        if not arg or any(c in arg for c in _ARG_FORBIDDEN):
            raise PlanError('avic_host_iommu_args / avic_host_cmdline_extra: %r is not a single '
                            'kernel argument (no spaces, quotes or shell characters)' % (arg,))
        if boot_critical(arg):
            raise PlanError('avic_host_iommu_args / avic_host_cmdline_extra: %r is needed to boot '
                            'the system and is never managed by this collection: remove it from '
                            'the list (the boot loader keeps the value it has)' % (arg,))
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
            raise PlanError('avic_host_cmdline_remove: %r is not a kernel argument key' % (item,))
        if boot_critical(key) or not (owned_family(key) or key in owned):
            refused.append(text)
        elif key not in keys:
            keys.append(key)
    if refused:
        raise PlanError(
            'avic_host_cmdline_remove: %s %s not removed: only the arguments this collection adds '
            '(amd_iommu*, iommu, iommu.*, kvm_amd.*) may be removed, never %s; take %s out of the '
            'list (nothing was changed)' % (
                ', '.join(refused), 'is' if len(refused) == 1 else 'are',
                'an argument the system boots with (root=, rootflags=, ro/rw, init=, resume=, rd.*, '
                'cryptdevice=, ...) or one the user added',
                'it' if len(refused) == 1 else 'them'))
    return keys


def arg_key(arg):
    """The parameter name of a kernel argument; the kernel treats '-' and '_' alike in names."""
    return arg.partition('=')[0].replace('-', '_')


def split_kernel_args(line):
    """Split a command line the way the kernel does: whitespace separates arguments, except
    inside double quotes (``dyndbg="file foo.c +p"`` is one argument)."""
    out, word, quoted = [], [], False
    for char in line or '':
        if char == '"':
            quoted = not quoted
        elif char.isspace() and not quoted:
            if word:
                out.append(''.join(word))
                word = []
            continue
        word.append(char)
    if word:
        out.append(''.join(word))
    return out


def _plan_tokens(keys, ensure, remove_keys=()):
    """What to do with each token of a line, from its key (None: an opaque token, kept).

    Returns (actions, tail): per token None (keep), False (drop) or the owned argument that takes
    its place; tail is what to append. The first token of an owned key is replaced in place,
    later ones dropped; the keys of ``remove_keys`` that are not owned are dropped.
    """
    wanted = {}
    order = []
    for arg in ensure:
        if arg_key(arg) not in wanted:
            order.append(arg_key(arg))
        wanted[arg_key(arg)] = arg
    remove = set(arg_key(k) for k in remove_keys) - set(wanted)
    actions, seen = [], set()
    for key in keys:
        if key is None:
            actions.append(None)
        elif key in remove:
            actions.append(False)
        elif key in wanted:
            actions.append(False if key in seen else wanted[key])
            seen.add(key)
        else:
            actions.append(None)
    return actions, [wanted[k] for k in order if k not in seen]


def edit_cmdline(line, ensure, remove_keys=()):
    """``line`` with each argument of ``ensure`` present once (same key replaced in place) and
    the keys of ``remove_keys`` dropped; the user's other arguments keep their order."""
    words = split_kernel_args(line)
    actions, tail = _plan_tokens([arg_key(w) for w in words], ensure, remove_keys)
    out = [w if act is None else act for w, act in zip(words, actions) if act is not False]
    return ' '.join(out + tail)


def cmdline_needs_change(line, ensure, remove_keys=()):
    """Whether edit_cmdline() would change ``line`` (None when the line is not known)."""
    if line is None:
        return None
    return split_kernel_args(edit_cmdline(line, ensure, remove_keys)) != split_kernel_args(line)


GRUB_DEFAULT_FILE = '/etc/default/grub'
GRUB_DROPIN_DIR = '/etc/default/grub.d'
GRUB_LINUX = 'GRUB_CMDLINE_LINUX'
KERNEL_CMDLINE_FILE = '/etc/kernel/cmdline'
KERNEL_CMDLINE_DEFAULTS = '/usr/lib/kernel/cmdline'
PROXMOX_UUIDS = '/etc/kernel/proxmox-boot-uuids'
EFI_DIR = '/sys/firmware/efi'
SYSTEMD_BOOT_FILES = ('/boot/loader/loader.conf', '/efi/loader/loader.conf', '/boot/efi/loader/loader.conf')
BLS_ENTRIES = '/boot/loader/entries'
# Set by the boot loader, not by the user: never copied from /proc/cmdline into a configuration.
BOOT_LOADER_KEYS = ('BOOT_IMAGE', 'initrd')

TARGET_RULE = (
    'Proxmox VE with /etc/kernel/proxmox-boot-uuids: the ESP modes of "proxmox-boot-tool status" '
    'decide (uefi: systemd-boot reads /etc/kernel/cmdline; grub: /etc/default/grub); without them '
    'a BIOS boot (no /sys/firmware/efi) is GRUB and a UEFI boot is systemd-boot when '
    '/etc/kernel/cmdline exists or /etc/default/grub does not. Elsewhere a systemd-boot '
    'loader.conf means /etc/kernel/cmdline when there is no /etc/default/grub or the host booted '
    'through UEFI; /etc/kernel/cmdline alone means kernel-install; grubby with Boot Loader '
    'Specification entries (/boot/loader/entries, Fedora/RHEL) means grubby; else '
    '/etc/default/grub; else grubby; else none.')


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


def seed_kernel_cmdline(proc_cmdline):
    """The line to seed a missing /etc/kernel/cmdline with: the running command line without the
    arguments the boot loader adds (BOOT_IMAGE=, initrd=). PlanError when nothing would be left
    of the user's arguments (kernel-install would then boot without root=)."""
    words = [w for w in split_kernel_args(proc_cmdline) if arg_key(w) not in BOOT_LOADER_KEYS]
    if not words:
        raise PlanError('%s does not exist and /proc/cmdline has no arguments to seed it with: '
                        'write the full kernel command line (root= and the rest) to %s first'
                        % (KERNEL_CMDLINE_FILE, KERNEL_CMDLINE_FILE))
    return ' '.join(words)


# --- /etc/default/grub: shell assignments, edited token by token ------------------------------

_ASSIGN = re.compile(r'[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=')
_STOP = ' \t\n;&|<>()'
_DQ_ESCAPES = '$`"\\\n'


class _Assignment(object):
    """One ``NAME=value`` of a shell file: the value's span and its characters.

    ``chars`` are (literal, raw_start, raw_end, context) with context 'u' (unquoted), 'd' (double
    quotes), 's' (single quotes) or 'x' (an expansion such as $VAR, kept as its raw text).
    """

    def __init__(self, path, name, start, end, chars, line):
        self.path, self.name, self.start, self.end = path, name, start, end
        self.chars, self.line = chars, line
        self._tokens = None

    def tokens(self):
        """Kernel arguments of the value: dicts with text, key (None if opaque), rs, re, ctx."""
        if self._tokens is None:
            self._tokens = self._split()
        return self._tokens

    def _split(self):
        out, cur, quoted = [], [], False

        def flush():
            if cur:
                opaque = any(c[3] == 'x' for c in cur)
                text = ''.join(c[0] for c in cur)
                out.append({'text': text, 'key': None if opaque else arg_key(text),
                            'rs': cur[0][1], 're': cur[-1][2], 'ctx': cur[-1][-1], 'chars': list(cur)})
                del cur[:]
        for char in self.chars:
            lit, ctx = char[0], char[3]
            if ctx != 'x' and lit == '"':
                quoted = not quoted
            elif ctx != 'x' and lit.isspace() and not quoted:
                flush()
                continue
            cur.append(char)
        flush()
        return out


def _expansion_end(text, pos):
    """End of the expansion starting with '$' or '`' at ``pos`` (None: a literal '$')."""
    n = len(text)
    if text[pos] == '`':
        end = text.find('`', pos + 1)
        return None if end < 0 else end + 1
    if pos + 1 >= n:
        return None
    nxt = text[pos + 1]
    if nxt in '{(':
        close = '}' if nxt == '{' else ')'
        depth, i = 0, pos + 1
        while i < n:
            if text[i] == nxt:
                depth += 1
            elif text[i] == close:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return None
    match = re.compile(r'[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]').match(text, pos + 1)
    return match.end() if match else None


def _parse_value(text, pos, path, name, line):
    """The shell word that starts at ``pos`` (right after ``NAME=``)."""
    chars, i, n, ctx = [], pos, len(text), 'u'

    def fail(why):
        raise PlanError('cannot parse the value of %s in %s line %d (%s): fix its quoting'
                        % (name, path, line, why))
    while i < n:
        char = text[i]
        if ctx == 'u':
            if char in _STOP:
                break
            if char == '\\':
                if i + 1 < n and text[i + 1] != '\n':
                    chars.append((text[i + 1], i, i + 2, 'u'))
                i += 2
                continue
            if char == '"':
                ctx, i = 'd', i + 1
                continue
            if char == "'":
                ctx, i = 's', i + 1
                continue
        elif ctx == 's':
            if char == "'":
                ctx, i = 'u', i + 1
                continue
            chars.append((char, i, i + 1, 's'))
            i += 1
            continue
        else:
            if char == '"':
                ctx, i = 'u', i + 1
                continue
            if char == '\\' and i + 1 < n and text[i + 1] in _DQ_ESCAPES:
                if text[i + 1] != '\n':
                    chars.append((text[i + 1], i, i + 2, 'd'))
                i += 2
                continue
        if char in '$`':
            end = _expansion_end(text, i)
            if end is not None:
                chars.append((text[i:end], i, end, 'x', ctx))
                i = end
                continue
            if char == '`':
                fail('unterminated `')
        chars.append((char, i, i + 1, ctx))
        i += 1
    if ctx != 'u':
        fail('unterminated %s quote' % ('double' if ctx == 'd' else 'single'))
    return _Assignment(path, name, pos, i, chars, line)


def shell_assignments(text, path=GRUB_DEFAULT_FILE):
    """Every ``NAME=value`` that starts a line of a shell file such as /etc/default/grub."""
    out, pos, n = [], 0, len(text)
    while pos < n:
        match = _ASSIGN.match(text, pos)
        if match:
            value = _parse_value(text, match.end(), path, match.group(1), text.count('\n', 0, pos) + 1)
            out.append(value)
            eol = text.find('\n', value.end)
        else:
            eol = text.find('\n', pos)
        pos = n if eol < 0 else eol + 1
    return out


def _self_reference(token, name):
    return token['key'] is None and token['text'] in ('$%s' % name, '${%s}' % name)


def _parse_sources(sources):
    return [a for path, text in sources for a in shell_assignments(text, path)]


def _effective(parsed, name):
    """The arguments ``name`` ends with once every assignment of ``parsed`` ran, each as
    (assignment, token); a self-reference ($NAME) stands for the value before."""
    value = []
    for assignment in parsed:
        if assignment.name != name:
            continue
        new = []
        for token in assignment.tokens():
            if _self_reference(token, name):
                new.extend(value)
            else:
                new.append((assignment, token))
        value = new
    return value


def _winner(parsed, name):
    """The last assignment of ``name`` (the one that wins), or None."""
    last = None
    for assignment in parsed:
        if assignment.name == name:
            last = assignment
    return last


def grub_sources(read, listdir):
    """(path, text) of the files grub-mkconfig sources, in its order: /etc/default/grub, then
    /etc/default/grub.d/*.cfg sorted (Debian and Ubuntu; cloud images set the command line
    there). ``read`` returns a file's text or None, ``listdir`` a directory's names."""
    sources = []
    main = read(GRUB_DEFAULT_FILE)
    if main is not None:
        sources.append((GRUB_DEFAULT_FILE, main))
    for name in sorted(listdir(GRUB_DROPIN_DIR) or []):
        if name.endswith('.cfg'):
            text = read('%s/%s' % (GRUB_DROPIN_DIR, name))
            if text is not None:
                sources.append(('%s/%s' % (GRUB_DROPIN_DIR, name), text))
    return sources


def _line(parsed):
    return ' '.join(t['text'] for _a, t in _effective(parsed, GRUB_LINUX) + _effective(parsed, GRUB_VARIABLE))


def grub_line(sources):
    """The arguments GRUB puts on a normal entry: GRUB_CMDLINE_LINUX then
    GRUB_CMDLINE_LINUX_DEFAULT, as they end after every source."""
    return _line(_parse_sources(sources))


def _dq(text):
    return ''.join('\\' + c if c in '"\\$`' else c for c in text)


def _rewrite(assignment, text, actions, tail):
    """The new raw value of ``assignment`` (None when it stays as it is)."""
    raw = text[assignment.start:assignment.end]
    base = assignment.start
    tokens = assignment.tokens()
    edits = []
    for index, (token, act) in enumerate(zip(tokens, actions)):
        if act is None or act == token['text']:
            continue
        if act is False:
            if index > 0:
                edits.append((tokens[index - 1]['re'] - base, token['re'] - base, ''))
            elif index + 1 < len(tokens):
                edits.append((token['rs'] - base, tokens[index + 1]['rs'] - base, ''))
            else:
                edits.append((token['rs'] - base, token['re'] - base, ''))
        else:
            edits.append((token['rs'] - base, token['re'] - base, act))
    kept = [t for t, a in zip(tokens, actions) if a is not False]
    if tail:
        words = ' '.join(tail)
        if tokens:
            at, ctx = tokens[-1]['re'] - base, tokens[-1]['ctx']
        elif raw[-1:] in ('"', "'") and len(raw) >= 2:
            at, ctx = len(raw) - 1, 'd'
        else:
            at, ctx = len(raw), 'u'
        words = (' ' if kept else '') + words
        if ctx == 'u':
            words = '"%s"' % words
        edits.append((at, at, words))
    if not edits:
        return None
    edits.sort(key=lambda e: (e[0], e[1]))
    merged = []
    for start, end, repl in edits:
        if merged and start < merged[-1][1] and not repl and not merged[-1][2]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), '')
        else:
            merged.append((start, end, repl))
    out, cursor = [], 0
    for start, end, repl in merged:
        out.append(raw[cursor:max(cursor, start)])
        out.append(repl)
        cursor = max(cursor, end)
    out.append(raw[cursor:])
    new_raw = ''.join(out)
    expected = [t['text'] if a is None else a for t, a in zip(tokens, actions) if a is not False] + tail
    if '"' not in raw and "'" not in raw and any(e[2] for e in merged):
        new_raw = None  # an unquoted value takes no space: quote the whole value below
    if new_raw is None or _value_words(new_raw) != expected:
        parts = []
        for token, act in zip(tokens, actions):
            if act is False:
                continue
            if act is None:
                parts.append(''.join(c[0] if c[3] == 'x' else _dq(c[0]) for c in token['chars']))
            else:
                parts.append(act)
        new_raw = '"%s"' % ' '.join(parts + list(tail))
        if _value_words(new_raw) != expected:
            raise PlanError('cannot edit %s in %s line %d safely: put %s there by hand'
                            % (assignment.name, assignment.path, assignment.line, ' '.join(tail) or
                               'the arguments'))
    return new_raw


def _value_words(raw):
    try:
        value = _parse_value(raw, 0, 'the new value', 'the value', 1)
    except PlanError:
        return None
    if value.end != len(raw):
        return None
    return [t['text'] for t in value.tokens()]


def edit_grub_files(sources, ensure, remove_keys=()):
    """Put ``ensure`` on the GRUB command line of ``sources`` (grub_sources()), token by token.

    The arguments of GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT are taken together, as
    GRUB joins them: an owned argument already in GRUB_CMDLINE_LINUX stays there (replaced in place
    when its value differs) and is not added twice; new ones go to the GRUB_CMDLINE_LINUX_DEFAULT
    that wins (the last one sourced, a /etc/default/grub.d/*.cfg file on Ubuntu cloud images), or
    a new line at the end of /etc/default/grub. Only the values' bytes change; every other
    argument, line, comment and text after a closing quote stays as it was.

    Returns {texts: {path: new text} of the files that change, before, after (the joined lines),
    path: the file new arguments go to, notes: [what the caller should say]}.
    """
    sources = list(sources) or [(GRUB_DEFAULT_FILE, '')]
    for path, text in sources:
        if '\r' in text:
            raise PlanError('%s has Windows (CRLF) line ends: the shell that grub-mkconfig runs reads '
                            'each \\r into the values, so the kernel would get broken arguments. '
                            'Convert the file (dos2unix %s, or sed -i "s/\\r$//" %s) and run again; '
                            'nothing was changed' % (path, path, path))
    original = dict(sources)
    parsed = _parse_sources(sources)
    flat = _effective(parsed, GRUB_LINUX) + _effective(parsed, GRUB_VARIABLE)
    counts = {}
    for _assignment, token in flat:
        counts[id(token)] = counts.get(id(token), 0) + 1
    actions, tail = _plan_tokens([None if counts[id(t)] > 1 else t['key'] for _a, t in flat],
                                 ensure, remove_keys)
    by_token = dict((id(t), act) for (_a, t), act in zip(flat, actions))
    winner = _winner(parsed, GRUB_VARIABLE)
    texts = dict(sources)
    for assignment in sorted(parsed, key=lambda a: -a.start):
        add = tail if assignment is winner else []
        token_actions = [by_token.get(id(t)) for t in assignment.tokens()]
        if all(act is None for act in token_actions) and not add:
            continue
        text = texts[assignment.path]
        new_raw = _rewrite(assignment, text, token_actions, add)
        if new_raw is not None:
            texts[assignment.path] = text[:assignment.start] + new_raw + text[assignment.end:]
    if winner is None and tail:
        main = texts.get(GRUB_DEFAULT_FILE, '')
        texts[GRUB_DEFAULT_FILE] = main + ('' if not main or main.endswith('\n') else '\n') + \
            '%s="%s"\n' % (GRUB_VARIABLE, ' '.join(tail))
    path = winner.path if winner is not None else GRUB_DEFAULT_FILE
    notes = []
    if path != GRUB_DEFAULT_FILE:
        notes.append('%s sets %s after %s and wins: the arguments belong there'
                     % (path, GRUB_VARIABLE, GRUB_DEFAULT_FILE))
    changed = dict((p, t) for p, t in texts.items() if t != original.get(p))
    order = [p for p, _t in sources] + [p for p in texts if p not in original]
    return {'texts': changed, 'before': _line(parsed),
            'after': grub_line([(p, texts[p]) for p in order]), 'path': path, 'notes': notes}


def edit_grub_default(text, ensure, remove_keys=(), variable=GRUB_VARIABLE):
    """/etc/default/grub ``text`` with ``ensure`` on its command line (edit_grub_files() on this
    one file)."""
    if variable != GRUB_VARIABLE:
        raise PlanError('only %s is edited' % GRUB_VARIABLE)
    result = edit_grub_files([(GRUB_DEFAULT_FILE, text)], ensure, remove_keys)
    return result['texts'].get(GRUB_DEFAULT_FILE, text)


def grub_value(text, variable=GRUB_VARIABLE, dropins=()):
    """The arguments GRUB puts on a normal entry from /etc/default/grub ``text`` (and the
    (path, text) of /etc/default/grub.d files in ``dropins``): GRUB_CMDLINE_LINUX then
    ``variable``."""
    sources = [(GRUB_DEFAULT_FILE, text)] + list(dropins)
    if variable != GRUB_VARIABLE:
        return ' '.join(t['text'] for _a, t in _effective(_parse_sources(sources), variable))
    return grub_line(sources)


def grub_next_boot(read, listdir):
    """grub_line() of the files grub-mkconfig sources (for the facts), None if unreadable."""
    try:
        return grub_line(grub_sources(read, listdir))
    except PlanError:
        return None


# --- activation: reload, reboot, final state ---------------------------------------------------

def next_boot_line(facts, module_result=None):
    """The kernel command line configured for the next boot: what vfio.avic.avic_cmdline reported
    when it ran (``next_boot``), else the facts' boot_cmdline; None when no configuration is
    managed (target none) or it cannot be read."""
    result = module_result or {}
    if result.get('target') and not result.get('skipped'):
        return result.get('next_boot') if result.get('target') != 'none' else None
    boot = facts.get('boot_cmdline') or {}
    if boot.get('target') in (None, 'none'):
        return None
    return boot.get('value')


def cmdline_decision(running, next_boot, args, remove_keys=(), target=None):
    """Whether the owned arguments wait for a reboot: {pending, missing, reason}.

    ``pending`` only when the configuration of the next boot carries every owned argument (and
    none of ``remove_keys``) while the running command line lacks one: a reboot then applies them.
    When the next boot would not carry them either (no managed configuration, an override the
    role did not edit), a reboot changes nothing: ``reason`` says so and ``pending`` is False.
    """
    remove = set(arg_key(k) for k in remove_keys) - set(arg_key(a) for a in args)
    words = split_kernel_args(running)
    missing = [a for a in args if a not in words] + \
        [w for w in words if arg_key(w) in remove]
    if not missing:
        return {'pending': False, 'missing': [], 'reason': None}
    if next_boot is None:
        return {'pending': False, 'missing': missing, 'reason': (
            'the running kernel command line lacks %s and no boot configuration the role manages '
            'would add it (boot config %s): no reboot; add it to the boot loader by hand or set '
            'avic_host_boot_config' % (' '.join(missing), target or 'none'))}
    planned = split_kernel_args(next_boot)
    lacking = [a for a in args if a not in planned] + [w for w in planned if arg_key(w) in remove]
    if lacking:
        return {'pending': False, 'missing': missing, 'reason': (
            'the running kernel command line lacks %s, and so does the configuration of the next '
            'boot (%s): a reboot would not apply it; no reboot' % (' '.join(missing), ' '.join(lacking)))}
    return {'pending': True, 'missing': missing, 'reason':
            'the kernel command line takes effect at the next boot: %s' % ' '.join(missing)}


def _same_value(first, second):
    one, two = host_rules.param_bool(first), host_rules.param_bool(second)
    if one is not None and two is not None:
        return one == two
    return str(first) == str(second)


def cmdline_option_conflicts(options, running=None, next_boot=None):
    """kvm_amd.<option>= arguments of the kernel command line (running, next boot) that set a
    managed option to another value. kmod adds the command line's options after those of
    /etc/modprobe.d, so they win at every load of the module. Returns messages."""
    wanted = dict(options)
    out = []
    for where, line in (('the running kernel command line', running),
                        ('the next boot\'s kernel command line', next_boot)):
        if line is None:
            continue
        found = host_rules.cmdline_module_options(split_kernel_args(line))
        for key in sorted(found):
            if key in wanted and not _same_value(found[key], wanted[key]):
                out.append('%s sets kvm_amd.%s=%s, which overrides the managed %s=%s of '
                           'modprobe.d at every load: remove it from the boot configuration (or '
                           'own kvm_amd.%s=%s through avic_host_cmdline_extra)'
                           % (where, key, found[key], key, wanted[key], key, wanted[key]))
    return out


def activation(facts, options, cmdline_args, next_boot=None, remove_keys=(), reloaded=False,
               winning_conflicts=(), target=None):
    """What activating the options needs now: {reload_needed, reboot, cmdline_pending,
    options_apply_at_boot, reasons}.

    ``reboot`` is True only when a reboot would apply something: the next boot's command line
    carries owned arguments the running one lacks, or kvm_amd runs other options and the next
    load would take the managed ones (no winning modprobe.d file, no kvm_amd.* argument of the
    next boot against them).
    """
    kvm = facts.get('kvm_amd') or {}
    params = kvm.get('parameters') or {}
    wanted = dict(options)
    differs = host_rules.pending_differences(params, wanted) if kvm.get('loaded') else {}
    reload_needed = bool(differs) or not kvm.get('loaded')
    decision = cmdline_decision(facts.get('cmdline') or '', next_boot, cmdline_args, remove_keys, target)
    reasons = [decision['reason']] if decision['reason'] else []
    option_conflicts = cmdline_option_conflicts(
        options, facts.get('cmdline'), next_boot if next_boot != facts.get('cmdline') else None)
    reasons.extend(option_conflicts)
    blocked = list(option_conflicts)
    for conflict in winning_conflicts or ():
        if conflict.get('wins', True):
            blocked.append(conflict.get('message') or str(conflict))
    apply_at_boot = bool(differs) and not reloaded and not blocked
    if differs and not reloaded and blocked:
        reasons.append('a reboot would load kvm_amd with other options than the managed ones '
                       '(see above): no reboot for them')
    return {'reload_needed': reload_needed, 'cmdline_pending': decision['pending'],
            'options_apply_at_boot': apply_at_boot,
            'reboot': bool(decision['pending'] or apply_at_boot), 'reasons': reasons,
            'differs': differs}


def final_state(facts, options, cmdline_args, cmdline_changed=False, reloaded=False,
                preflight_result=None, next_boot=None, remove_keys=(), winning_conflicts=(),
                target=None):
    """avic_host_status {state, reasons, running, wanted, ...} after the role acted.

    ``facts`` are the vfio_avic facts read after activation (or before, when nothing changed);
    ``next_boot`` the configured command line of the next boot (next_boot_line()).
    ``cmdline_changed`` is kept for callers; the state follows the configured line, not the edit.
    """
    pre = preflight_result or {}
    if pre.get('action') in ('report', 'stop'):
        return {'state': pre['state'], 'reasons': list(pre.get('reasons') or []),
                'warnings': list(pre.get('warnings') or []), 'running': {}, 'wanted': {},
                'reloaded': False, 'reload_needed': False, 'cmdline_pending': False,
                'reboot_needed': False}
    kvm = facts.get('kvm_amd') or {}
    params = kvm.get('parameters') or {}
    wanted = dict(options)
    plan = activation(facts, options, cmdline_args, next_boot, remove_keys, reloaded,
                      winning_conflicts, target)
    differs = plan['differs']
    reasons = []
    if plan['cmdline_pending']:
        reasons.extend(plan['reasons'][:1])
        others = plan['reasons'][1:]
    else:
        others = plan['reasons']
    if not kvm.get('loaded'):
        reasons.append('kvm_amd is not loaded: the options apply when it loads')
    for key, diff in sorted(differs.items()):
        reasons.append('kvm_amd %s: configured %s, running %s' % (key, diff['configured'],
                                                                  diff['running']))
    reasons.extend(others)
    avic_on = host_rules.param_bool(params.get('avic'))
    avic_wanted = host_rules.param_bool(wanted.get('avic', '1')) is not False
    if kvm.get('loaded') and not differs and avic_on is False and avic_wanted:
        reasons.append('kvm_amd runs with avic=N although avic=1 is set: the CPU or kernel refused '
                       'it (check dmesg)')
    if not avic_wanted:
        reasons.append('AVIC is turned off on purpose (avic=0, avic_host_enabled: false)')
    guests = facts.get('guests') or []
    if differs and guests:
        reasons.append('guests are running (%s): kvm_amd cannot be reloaded until they stop'
                       % ', '.join(guest_labels(guests)))
    if facts.get('container') and (differs or not kvm.get('loaded')):
        reasons.append('in a %s container the module belongs to the container host' % facts['container'])
    if reloaded and differs:
        reasons.insert(0, 'kvm_amd was reloaded but still runs different options: the kernel '
                          'refused them (check dmesg)')
        state = 'failed'
    elif plan['cmdline_pending']:
        state = 'pending_reboot'
    elif differs or not kvm.get('loaded'):
        state = 'pending_reload'
    elif not avic_wanted:
        state = 'disabled'
    elif avic_on or avic_on is None:
        state = 'active'
    else:
        state = 'failed'
    return {'state': state, 'reasons': reasons, 'warnings': list(pre.get('warnings') or []),
            'running': dict((k, params.get(k)) for k in sorted(wanted) if k in params),
            'wanted': wanted, 'reloaded': bool(reloaded),
            'reload_needed': plan['reload_needed'],
            'cmdline_pending': plan['cmdline_pending'],
            'reboot_needed': plan['reboot']}


# --- running guests, right before a reload or a reboot ------------------------------------------

def guest_labels(guests):
    """Readable names of running QEMU guests: the libvirt name, or ``pid N (no name)``."""
    return sorted(str(g.get('name')) if g.get('name') else 'pid %s (no name)' % g.get('pid')
                  for g in guests or [])


def reboot_guard(guests, libvirt_running=None, shutdown=False, container=None, check_mode=False):
    """Whether a host may go down now, from the guests read right before: {action, shutdown,
    guests, reason}.

    ``guests`` are the QEMU processes (vfio_avic.guests), ``libvirt_running`` the names
    ``virsh list --state-running`` printed (None when virsh could not be asked). ``action`` is
    ``proceed`` (nothing runs), ``shutdown`` (shut ``shutdown`` down first: only libvirt domains,
    by name), ``skip`` or ``report`` (check mode, container); ``reason`` says why.
    """
    names = sorted(set(n for n in (libvirt_running or []) if n))
    known = set(names)
    others = [g for g in guests or [] if not g.get('name') or g.get('name') not in known]
    if libvirt_running is None:
        names = sorted(set(g['name'] for g in guests or [] if g.get('name')))
        others = [g for g in guests or [] if not g.get('name')]
    labels = sorted(set(names) | set(guest_labels(others)))
    if container:
        return {'action': 'report', 'shutdown': [], 'guests': labels,
                'reason': 'in a %s container the reboot belongs to the container host: not '
                          'rebooted' % container}
    if not labels:
        if check_mode:
            return {'action': 'report', 'shutdown': [], 'guests': [],
                    'reason': 'check mode: the host would be rebooted now'}
        return {'action': 'proceed', 'shutdown': [], 'guests': [], 'reason': None}
    if not shutdown:
        return {'action': 'skip', 'shutdown': [], 'guests': labels,
                'reason': 'guests are running (%s): reboot skipped; set the role\'s '
                          '*_shutdown_guests: true to shut them down first' % ', '.join(labels)}
    if others:
        return {'action': 'skip', 'shutdown': [], 'guests': labels,
                'reason': 'QEMU processes that libvirt does not manage are running (%s): they '
                          'cannot be shut down by name; reboot skipped, stop them first'
                          % ', '.join(guest_labels(others))}
    if check_mode:
        return {'action': 'report', 'shutdown': names, 'guests': labels,
                'reason': 'check mode: %s would be shut down and the host rebooted' % ', '.join(names)}
    return {'action': 'shutdown', 'shutdown': names, 'guests': labels, 'reason': None}
