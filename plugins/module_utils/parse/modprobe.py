# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""modprobe.d files as kmod reads them: directory order, logical lines, a module's options; and
a loaded module's parameters in sysfs (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MODULE = 'kvm_amd'

# Searched in this order; for two files with the same name the first directory
# wins, and all files are then read sorted by name (kmod's rules).
MODPROBE_DIRS = ('/etc/modprobe.d', '/run/modprobe.d', '/usr/local/lib/modprobe.d',
                 '/lib/modprobe.d', '/usr/lib/modprobe.d')


def loaded_module(files, module=MODULE):
    """{loaded, parameters} of a kernel module as sysfs shows it (/sys/module/<module>) below the
    root of ``files`` (a hostfs.HostFiles); the values stripped of their newline."""
    base = '/sys/module/%s' % module
    parameters = {}
    for name in files.listdir(base + '/parameters'):
        value = files.read('%s/parameters/%s' % (base, name))
        if value is not None:
            parameters[name] = value.strip()
    return {'loaded': files.exists(base), 'parameters': parameters}


def module_name(name):
    """Canonical module name: hyphen and underscore are the same to modprobe."""
    return name.replace('-', '_')


def modprobe_file_order(files_by_dir):
    """Order modprobe.d files as kmod reads them.

    ``files_by_dir`` maps a directory to the names of its *.conf files. Returns
    the list of full paths that are read, sorted by file name, where a name in
    an earlier directory of MODPROBE_DIRS hides the same name in later ones.
    """
    chosen = {}
    for directory in MODPROBE_DIRS:
        for name in files_by_dir.get(directory, ()):
            if name.endswith('.conf') and name not in chosen:
                chosen[name] = '%s/%s' % (directory, name)
    return [chosen[name] for name in sorted(chosen)]


def logical_lines(text):
    """The commands of a modprobe.d file: continued lines joined, comments and blanks left out."""
    pending = ''
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith('\\'):
            pending += line[:-1] + ' '
            continue
        line = pending + line
        pending = ''
        stripped = line.strip()
        if stripped and not stripped.startswith('#'):
            yield stripped
    if pending.strip():
        yield pending.strip()


def parse_modprobe(files, module=MODULE):
    """Effective options of ``module`` from ordered (path, text) pairs.

    Returns {options: {name: value}, sources: {name: path}, files: [paths that
    mention the module], lines: [{path, line}], blacklisted: bool, install: [the
    commands of ``install <module> ...`` lines]}. Later files win, as the kernel
    reads repeated parameters left to right.
    """
    module = module_name(module)
    options, sources, mention, lines, install = {}, {}, [], [], []
    blacklisted = False
    for path, text in files:
        for line in logical_lines(text or ''):
            words = line.split()
            if len(words) < 2 or module_name(words[1]) != module:
                continue
            if path not in mention:
                mention.append(path)
            lines.append({'path': path, 'line': line})
            if words[0] == 'blacklist':
                blacklisted = True
            if words[0] == 'install':
                install.append(' '.join(words[2:]))
            if words[0] != 'options':
                continue
            for word in words[2:]:
                key, sep, value = word.partition('=')
                key = module_name(key)
                options[key] = value.strip('"') if sep else '1'
                sources[key] = path
    return {'options': options, 'sources': sources, 'files': mention, 'lines': lines,
            'blacklisted': blacklisted, 'install': install}
