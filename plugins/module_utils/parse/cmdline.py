# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel command line: the one splitter and editor (stdlib only).

Split as the kernel's own parser does (lib/cmdline.c next_arg(), called by parse_args() in
kernel/params.c): whitespace separates arguments except inside double quotes; a double quote
may start in the middle of a word (``dyndbg="file foo.c +p"`` is one argument); there are no
backslash escapes and single quotes are ordinary characters. The arguments keep their quotes,
so that an edited line is written back as it was read; arg_value() strips them from a value as
the kernel does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

KVM_AMD = 'kvm_amd'


def split_args(line):
    """The arguments of a command line, each as written (quotes kept)."""
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


def arg_key(arg):
    """The parameter name of a kernel argument; the kernel treats '-' and '_' alike in names."""
    return arg.partition('=')[0].replace('-', '_')


def arg_value(arg):
    """The value of ``arg`` as the kernel passes it on: '' for a bare word, the quotes of a
    quoted value taken off (``dyndbg="file foo.c +p"`` -> ``file foo.c +p``)."""
    _name, _sep, value = arg.partition('=')
    if value.startswith('"'):
        value = value[1:-1] if len(value) > 1 and value.endswith('"') else value[1:]
    return value


def cmdline_value(args, key):
    """The last value of ``key`` among ``args`` ('amd_iommu' -> 'on'), '' for a bare word,
    None when absent."""
    value = None
    for arg in args:
        if arg.partition('=')[0] == key:
            value = arg_value(arg)
    return value


def cmdline_module_options(args, module=KVM_AMD):
    """Module options given on the command line as ``kvm_amd.avic=1`` (``kvm-amd.x`` alike)."""
    module = module.replace('-', '_')
    options = {}
    for arg in args:
        name, sep, _value = arg.partition('=')
        mod, dot, param = name.partition('.')
        if dot and mod.replace('-', '_') == module and param:
            options[param.replace('-', '_')] = arg_value(arg) if sep else '1'
    return options


def plan_tokens(keys, ensure, remove_keys=()):
    """What to do with each argument of a line, from its key (None: an opaque token, kept).

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
    words = split_args(line)
    actions, tail = plan_tokens([arg_key(w) for w in words], ensure, remove_keys)
    out = [w if act is None else act for w, act in zip(words, actions) if act is not False]
    return ' '.join(out + tail)


def cmdline_needs_change(line, ensure, remove_keys=()):
    """Whether edit_cmdline() would change ``line`` (None when the line is not known)."""
    if line is None:
        return None
    return split_args(edit_cmdline(line, ensure, remove_keys)) != split_args(line)
