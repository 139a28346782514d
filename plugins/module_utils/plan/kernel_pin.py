# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the kernel role pins a kernel, per distribution (stdlib only): apt-mark hold, dnf
versionlock, pacman IgnorePkg (the pacman.conf merge), zypper addlock, proxmox-boot-tool pin."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import re


class PinError(ValueError):
    """A pin that cannot be made; ``field`` names the input that turns it off (pin)."""

    def __init__(self, message, field=None):
        super(PinError, self).__init__(message)
        self.field = field


def pin(dist, names, release=None):
    """How a kernel is pinned: {method, packages, file, ignore, command}.

    Proxmox pins a release: without one (``latest`` before the package manager has installed
    it) ``command`` is None and the role reads the installed kernel back first (resolve()).
    """
    names = list(names)
    result = {'packages': names, 'file': None, 'ignore': None, 'command': None}
    if dist in ('debian', 'ubuntu'):
        result.update(method='apt-hold', command=['apt-mark', 'hold'] + names)
    elif dist == 'proxmox':
        result.update(method='proxmox-boot-tool',
                      command=['proxmox-boot-tool', 'kernel', 'pin', release] if release else None)
    elif dist == 'RedHat':
        result.update(method='dnf-versionlock', command=['dnf', 'versionlock', 'add'] + names)
    elif dist == 'Archlinux':
        result.update(method='pacman-ignorepkg', file='/etc/pacman.conf',
                      ignore=names + ['%s-headers' % n for n in names])
    elif dist == 'Suse':
        result.update(method='zypper-lock', command=['zypper', '--non-interactive', 'addlock'] + names)
    else:
        raise PinError('no pin method for %r' % dist)
    return result


def ignorepkg_merge(text, names, pin_name='pin'):
    """pacman.conf with ``names`` in IgnorePkg, everything else kept: {content, changed, added}.

    IgnorePkg may appear on several lines of [options] (pacman adds them up) and takes globs;
    a name already covered by any of them is not added again. Missing names go at the end of
    the last active IgnorePkg line of [options] (before an inline comment), else on a new line
    after the commented-out default (``#IgnorePkg   =``), else right after ``[options]``.
    ``pin_name``: how the error names the input that turns pinning off.
    """
    lines = (text or '').splitlines(True)
    section, options_at, active, commented, present = None, None, [], None, []
    for index, line in enumerate(lines):
        stripped = line.strip()
        header = re.match(r'^\[([^\]]+)\]', stripped)
        if header:
            section = header.group(1).strip()
            if section == 'options' and options_at is None:
                options_at = index
            continue
        if section != 'options':
            continue
        body = stripped.split('#', 1)[0].strip()
        match = re.match(r'^IgnorePkg\s*=(.*)$', body)
        if match:
            active.append(index)
            present.extend(match.group(1).split())
        elif commented is None and re.match(r'^#\s*IgnorePkg\s*=', stripped):
            commented = index
    if options_at is None:
        raise PinError('/etc/pacman.conf has no [options] section: pacman would not read an '
                       'IgnorePkg there; fix the file (see pacman.conf(5)) or set %s: false' % pin_name,
                       'pin')
    added = [n for n in names if not any(fnmatch.fnmatchcase(n, pattern) for pattern in present)]
    added = [n for i, n in enumerate(added) if n not in added[:i]]
    if not added:
        return {'content': text, 'changed': False, 'added': []}
    if active:
        index = active[-1]
        line = lines[index]
        newline = '\n' if line.endswith('\n') else ''
        body = line[:len(line) - len(newline)]
        code, hash_, comment = body.partition('#')
        kept = code.rstrip()
        tail = (code[len(kept):] or ' ') + hash_ + comment if hash_ else ''
        lines[index] = '%s %s%s%s' % (kept, ' '.join(added), tail, newline)
    else:
        after = commented if commented is not None else options_at
        if not lines[after].endswith('\n'):
            lines[after] += '\n'
        lines.insert(after + 1, 'IgnorePkg   = %s\n' % ' '.join(added))
    return {'content': ''.join(lines), 'changed': True, 'added': added}
