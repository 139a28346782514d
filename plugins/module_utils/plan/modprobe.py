# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kvm_amd options the host gets: wanted_options(), the managed file (modprobe_text()),
the other modprobe.d files that fight it (conflicts()) and their lines commented out
(comment_conflicts()); what vfio.avic.avic_modprobe returns (outcome()), also decided from the
facts alone when they show the file is already as wanted (settled_from_facts()) (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.vfio.avic.plugins.module_utils.parse import modprobe as modprobe_parse
from ansible_collections.vfio.avic.plugins.module_utils.plan import activation as activation_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import PlanError
from ansible_collections.vfio.avic.plugins.module_utils.plan.preflight import contradiction

MANAGED_HEADER = ('# Managed by Ansible (vfio.avic.host): kvm_amd options for AVIC.\n'
                  '# Local changes are overwritten; set avic_host_* variables instead.\n')
_OPTION_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
_OPTION_VALUE = re.compile(r'^[A-Za-z0-9_.,:+-]+$')


def _value(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    return str(value)


# The kvm_amd options the collection decides itself, each with the field that sets it (npt: none,
# AVIC needs npt=1).
MANAGED_OPTIONS = {'avic': 'avic', 'npt': None, 'nested': 'nested', 'force_avic': 'force_avic'}
# The fields wanted_options() and its errors name.
FIELDS = ('avic', 'force_avic', 'nested', 'extra_options')


def wanted_options(force_avic=False, nested=False, extra=None, avic=True):
    """The kvm_amd options to write, as an ordered list of (name, value) strings.

    ``avic=False`` writes avic=0 (AVIC off on purpose; from 6.18 avic=auto turns it on by itself
    on Zen 4 or later CPUs with x2AVIC, AVIC in CPUID and nested paging). The managed options cannot be set through ``extra``: a second value would
    silently win over the first.
    """
    if force_avic and not avic:
        raise contradiction()
    options = [('avic', '1' if avic else '0'), ('npt', '1'), ('nested', _value(bool(nested)))]
    if force_avic:
        options.append(('force_avic', '1'))
    for name, value in sorted((extra or {}).items()):
        key = modprobe_parse.module_name(str(name))
        text = _value(value)
        if not _OPTION_NAME.match(key):
            raise PlanError('{extra_options}: %r is not a kvm_amd parameter name '
                            '(letters, digits and underscores)' % (name,), ('extra_options',))
        if key in MANAGED_OPTIONS:
            field = MANAGED_OPTIONS[key]
            raise PlanError('{extra_options}: %s is managed by this collection and cannot be '
                            'set here (it would override the managed value); %s' % (
                                key, ('use {%s} instead' % field) if field else
                                'AVIC needs npt=1, so it is always written'),
                            ('extra_options',) + ((field,) if field else ()))
        if not _OPTION_VALUE.match(text):
            raise PlanError('{extra_options}: the value %r of %s has characters modprobe '
                            'does not take (no spaces or quotes)' % (text, key), ('extra_options',))
        options = [(k, v) for k, v in options if k != key] + [(key, text)]
    return options


def check_managed_path(path):
    """Refuse a managed file kmod would not read at the next boot: PlanError naming {path}."""
    directory = modprobe_parse.MODPROBE_DIRS[0]
    if not path or os.path.dirname(path) != directory or os.path.normpath(path) != path:
        raise PlanError('{path} must be a file directly in %s/ (got %s): /run/modprobe.d is gone at '
                        'the next boot, /lib and /usr/lib belong to packages, and kmod reads no '
                        'other directory' % (directory, path), ('path',))
    if not path.endswith('.conf') or path == directory + '/.conf':
        raise PlanError('{path} must end in .conf (got %s): kmod ignores other names' % path, ('path',))


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
        parsed = modprobe_parse.parse_modprobe([(path, text)])
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
        if len(words) >= 2 and words[0] == 'options' and modprobe_parse.module_name(words[1]) == 'kvm_amd':
            kept = [w for w in words[2:] if modprobe_parse.module_name(w.partition('=')[0]) not in keys]
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


def outcome(path, options, found, kvm_amd, changed=False, commented=(), backups=()):
    """The result of vfio.avic.avic_modprobe: the managed ``path``, the ``options`` it holds, the
    conflicts ``found``, and whether the running module (``kvm_amd`` {loaded, parameters}) must
    be reloaded to take them (activation.reload_plan())."""
    reload = activation_plan.reload_plan(kvm_amd, options)
    return dict(changed=bool(changed), path=path, options=dict(options), conflicts=list(found),
                commented=list(commented), backups=list(backups),
                reload_required=reload['required'], loaded=reload['loaded'],
                reload_differs=reload['differs'])


def settled_from_facts(facts, path, options, comment=False, root='/'):
    """What vfio.avic.avic_modprobe would return without changing anything, decided from the
    vfio_avic fact, or None when the module must run.

    ``path`` is checked first (check_managed_path(), as the module checks it). None unless the
    facts were read at ``root`` (where the module would write) and show ``path`` holding exactly
    modprobe_text(``options``) (the texts of the modprobe.d files that mention kvm_amd, in kmod's
    order); with ``comment``, also None while a conflicting option in /etc could be commented
    out. The conflicts are those the module finds: files that do not mention kvm_amd cannot
    conflict.
    """
    check_managed_path(path)
    modprobe = (facts or {}).get('modprobe') or {}
    texts = modprobe.get('texts')
    if (facts or {}).get('root', '/') != root or not isinstance(texts, dict):
        return None
    if texts.get(path) != modprobe_text(options):
        return None
    files = [(p, texts[p]) for p in modprobe.get('read') or [] if p in texts]
    found = conflicts(files, path, options)
    if comment and any(c['option'] and c['path'].startswith('/etc/') for c in found):
        return None
    return outcome(path, options, found, facts.get('kvm_amd'))
