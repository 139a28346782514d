# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the host role does to a host, decided from its vfio_avic fact (stdlib only).

preflight() says whether to configure, stop or only report; wanted_options() the kvm_amd
options; modprobe_text(), conflicts() and comment_conflicts() the managed file and the other
modprobe.d files; edit_grub_default() and edit_cmdline() the kernel command line, touching only
the arguments the collection owns; final_state() the avic_host_status after activation.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

from ansible_collections.vfio.avic.plugins.module_utils import avic_host, avic_kernel

MANAGED_HEADER = ('# Managed by Ansible (vfio.avic.host): kvm_amd options for AVIC.\n'
                  '# Local changes are overwritten; set avic_host_* variables instead.\n')
GRUB_VARIABLE = 'GRUB_CMDLINE_LINUX_DEFAULT'
IOMMU_INTR = ('vapic', 'legacy')


class PlanError(ValueError):
    """An input the user must fix (named in the message)."""


# --- preflight -------------------------------------------------------------------------------

def preflight(facts, force_avic=False, allow_no_svm=False, allow_old_kernel=False,
              refuse_known_issues=False):
    """Decide from the vfio_avic fact: {action, state, reasons, warnings}.

    action is ``configure`` (write the AMD settings), ``report`` (nothing to do here: Intel or
    unknown vendor; the report says why) or ``stop`` (fail this host with the reasons).
    """
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
    if status == 'cpuid_hidden':
        if not force_avic:
            reasons.append(
                '%s AVIC can only be turned on with kvm_amd force_avic=1, which is unsupported by '
                'AMD and taints the kernel; set avic_host_force_avic: true to accept that.'
                % (cpu.get('message') or 'The CPU does not advertise AVIC in CPUID.'))
            return {'action': 'stop', 'state': 'failed', 'reasons': reasons, 'warnings': []}
        warnings.append('force_avic=1 is set: AVIC runs although CPUID does not advertise it; '
                        'unsupported, and the kernel is tainted (flag 64).')
    release = facts.get('kernel')
    if release:
        try:
            issues = avic_kernel.kernel_issues(release, facts.get('kernel_upstream'))
        except avic_kernel.KernelReleaseError as exc:
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


def wanted_options(force_avic=False, nested=False, extra=None):
    """The kvm_amd options to write, as an ordered list of (name, value) strings."""
    options = [('avic', '1'), ('npt', '1'), ('nested', _value(bool(nested)))]
    if force_avic:
        options.append(('force_avic', '1'))
    for name, value in sorted((extra or {}).items()):
        key = avic_host.module_name(str(name))
        text = _value(value)
        if not _OPTION_NAME.match(key):
            raise PlanError('avic_host_extra_options: %r is not a kvm_amd parameter name '
                            '(letters, digits and underscores)' % (name,))
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
        parsed = avic_host.parse_modprobe([(path, text)])
        if parsed['blacklisted']:
            out.append({'path': path, 'option': None, 'value': None, 'wins': True,
                        'message': '%s blacklists kvm_amd' % path})
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
    lines = text.splitlines(True)
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == 'options' and avic_host.module_name(words[1]) == 'kvm_amd':
            kept = [w for w in words[2:] if avic_host.module_name(w.partition('=')[0]) not in keys]
            if len(kept) != len(words) - 2:
                out.append('# %s  # disabled by vfio.avic.host\n' % line.rstrip('\n'))
                if kept:
                    out.append('options %s %s\n' % (words[1], ' '.join(kept)))
                continue
        out.append(line)
    return ''.join(out)


# --- kernel command line ---------------------------------------------------------------------

def owned_args(iommu_args=None, iommu_intr=None, extra_args=None):
    """The command-line arguments the role owns, in order, without duplicates."""
    args = []
    for arg in list(iommu_args or []) + ([('amd_iommu_intr=%s' % iommu_intr)] if iommu_intr else []) \
            + list(extra_args or []):
        arg = str(arg).strip()
        if not arg or any(c in arg for c in ' \t"\'\\$`'):
            raise PlanError('avic_host_iommu_args / avic_host_cmdline_extra: %r is not a single '
                            'kernel argument (no spaces, quotes or shell characters)' % (arg,))
        if iommu_intr and iommu_intr not in IOMMU_INTR:
            raise PlanError('avic_host_iommu_intr must be one of %s, got %r'
                            % (', '.join(IOMMU_INTR), iommu_intr))
        args = [a for a in args if _key(a) != _key(arg)] + [arg]
    return args


def _key(arg):
    return arg.partition('=')[0]


def edit_cmdline(line, ensure, remove_keys=()):
    """``line`` with each argument of ``ensure`` present once (same key replaced in place) and
    the keys of ``remove_keys`` dropped; the user's other arguments keep their order."""
    words = line.split()
    keys = dict((_key(a), a) for a in ensure)
    out, seen = [], set()
    for word in words:
        key = _key(word)
        if key in remove_keys and key not in keys:
            continue
        if key in keys:
            if key in seen:
                continue
            seen.add(key)
            out.append(keys[key])
            continue
        out.append(word)
    out.extend(a for a in ensure if _key(a) not in seen)
    return ' '.join(out)


GRUB_DEFAULT_FILE = '/etc/default/grub'
KERNEL_CMDLINE_FILE = '/etc/kernel/cmdline'
SYSTEMD_BOOT_FILES = ('/boot/loader/loader.conf', '/efi/loader/loader.conf', '/boot/efi/loader/loader.conf')


def cmdline_target(exists, has_grubby=False):
    """Where the kernel command line is configured: kernel_cmdline (Proxmox, systemd-boot,
    kernel-install), grub (/etc/default/grub), grubby, or none. ``exists`` is a path test."""
    grub = exists(GRUB_DEFAULT_FILE)
    if exists('/etc/kernel/proxmox-boot-uuids'):
        return 'kernel_cmdline'
    if not grub and (exists(KERNEL_CMDLINE_FILE) or any(exists(p) for p in SYSTEMD_BOOT_FILES)):
        return 'kernel_cmdline'
    if grub:
        return 'grub'
    return 'grubby' if has_grubby else 'none'


def cmdline_needs_change(line, ensure, remove_keys=()):
    """Whether edit_cmdline() would change ``line`` (None when the line is not known)."""
    if line is None:
        return None
    return edit_cmdline(line, ensure, remove_keys).split() != line.split()


_GRUB_LINE = re.compile(r'^(\s*(?:export\s+)?%s=)(.*)$')


def _unquote(value):
    value = value.strip()
    try:
        parts = shlex.split(value, comments=True)
    except ValueError:
        raise PlanError('cannot parse the value %r in /etc/default/grub: fix its quoting' % value)
    return ' '.join(parts)


def edit_grub_default(text, ensure, remove_keys=(), variable=GRUB_VARIABLE):
    """/etc/default/grub with ``ensure`` on the last ``variable=`` line (appended if absent)."""
    pattern = re.compile(_GRUB_LINE.pattern % re.escape(variable))
    lines = text.splitlines(True)
    index = None
    for i, line in enumerate(lines):
        if pattern.match(line.rstrip('\n')):
            index = i
    if index is None:
        current = ''
        new_value = edit_cmdline(current, ensure, remove_keys)
        tail = '' if not text or text.endswith('\n') else '\n'
        return text + tail + '%s="%s"\n' % (variable, new_value)
    match = pattern.match(lines[index].rstrip('\n'))
    current = _unquote(match.group(2))
    new_value = edit_cmdline(current, ensure, remove_keys)
    if new_value == current:
        return text
    lines[index] = '%s"%s"\n' % (match.group(1), new_value)
    return ''.join(lines)


def grub_value(text, variable=GRUB_VARIABLE):
    """The current value of ``variable`` in /etc/default/grub text ('' when absent)."""
    pattern = re.compile(_GRUB_LINE.pattern % re.escape(variable))
    value = ''
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            value = _unquote(match.group(2))
    return value


# --- final state -----------------------------------------------------------------------------

def final_state(facts, options, cmdline_args, cmdline_changed=False, reloaded=False,
                preflight_result=None):
    """avic_host_status {state, reasons, running, wanted} after the role acted.

    ``facts`` are the vfio_avic facts read after activation (or before, when nothing changed).
    """
    pre = preflight_result or {}
    if pre.get('action') in ('report', 'stop'):
        return {'state': pre['state'], 'reasons': list(pre.get('reasons') or []),
                'warnings': list(pre.get('warnings') or []), 'running': {}, 'wanted': {},
                'reloaded': False, 'reload_needed': False, 'cmdline_pending': False}
    kvm = facts.get('kvm_amd') or {}
    params = kvm.get('parameters') or {}
    wanted = dict(options)
    reasons = []
    running_args = avic_host.parse_cmdline(facts.get('cmdline') or '')
    missing_args = [a for a in cmdline_args if a not in running_args]
    if cmdline_changed or missing_args:
        reasons.append('the kernel command line takes effect at the next boot: %s'
                       % ' '.join(missing_args or cmdline_args))
    differs = avic_host.pending_differences(params, wanted) if kvm.get('loaded') else {}
    if not kvm.get('loaded'):
        reasons.append('kvm_amd is not loaded: the options apply when it loads')
    for key, diff in sorted(differs.items()):
        reasons.append('kvm_amd %s: configured %s, running %s' % (key, diff['configured'],
                                                                  diff['running']))
    avic_on = avic_host.param_bool(params.get('avic'))
    if kvm.get('loaded') and not differs and avic_on is False:
        reasons.append('kvm_amd runs with avic=N although avic=1 is set: the CPU or kernel refused '
                       'it (check dmesg)')
    guests = facts.get('guests') or []
    if differs and guests:
        reasons.append('guests are running (%s): kvm_amd cannot be reloaded until they stop'
                       % ', '.join(sorted(str(g.get('name') or g.get('pid')) for g in guests)))
    if facts.get('container') and (differs or not kvm.get('loaded')):
        reasons.append('in a %s container the module belongs to the container host' % facts['container'])
    if reloaded and differs:
        reasons.insert(0, 'kvm_amd was reloaded but still runs different options: the kernel '
                          'refused them (check dmesg)')
        state = 'failed'
    elif cmdline_changed or missing_args:
        state = 'pending_reboot'
    elif differs or not kvm.get('loaded'):
        state = 'pending_reload'
    elif avic_on or avic_on is None:
        state = 'active'
    else:
        state = 'failed'
    return {'state': state, 'reasons': reasons, 'warnings': list(pre.get('warnings') or []),
            'running': dict((k, params.get(k)) for k in sorted(wanted) if k in params),
            'wanted': wanted, 'reloaded': bool(reloaded),
            'reload_needed': bool(differs) or not kvm.get('loaded'),
            'cmdline_pending': bool(cmdline_changed or missing_args)}
