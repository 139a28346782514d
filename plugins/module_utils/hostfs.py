# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small, safe text-file edits for the vfio.avic modules (stdlib only).

Every write goes through HostFiles.write(): nothing happens in check mode, the old file is
backed up first (copied to a temporary file and renamed, so a backup is whole or absent), the new
one is written to a temporary file in the same directory and moved into place (module.atomic_move
keeps owner, mode and SELinux context), and each change is recorded with a before/after diff for
--diff. A write that fails (a full or read-only file system) leaves the file as it was, removes
its own temporary files and fails the module with the file's name.

A backup directory (``backup_dir`` of avic_domain and avic_proxmox_guest) is made here too, mode
0700, and write_backup() puts a new file there that never replaces another one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import tempfile
import time

# where which() looks, in this order
BIN_DIRS = ('usr/sbin', 'usr/bin', 'sbin', 'bin', 'usr/local/sbin', 'usr/local/bin')


class HostFiles(object):
    """The one reader and writer of a host's files, mounted at ``root`` ('/' for the host itself).

    Reads tolerate absence and permissions (``None`` or ``default``); writes are atomic, make a
    backup first when the module's ``backup`` option says so, and need an AnsibleModule (for
    check mode, the diff and a clean failure that names the file).
    """

    def __init__(self, module=None, root='/'):
        self.module = module
        self.root = os.path.abspath(root or '/')
        self.backups = []

    def real(self, path):
        """The path on this machine for the host path ``path``."""
        return os.path.join(self.root, path.lstrip('/')) if self.root != '/' else path

    def read(self, path, default=None):
        """Text of ``path``, or ``default`` when it does not exist or cannot be read."""
        try:
            with open(self.real(path), 'rb') as handle:
                return handle.read().decode('utf-8', 'replace')
        except (IOError, OSError):
            return default

    def exists(self, path):
        return os.path.exists(self.real(path))

    def listdir(self, directory, files_only=False):
        """Sorted names in ``directory`` (only regular files with ``files_only``); empty when absent."""
        real = self.real(directory)
        try:
            names = sorted(os.listdir(real))
        except (IOError, OSError):
            return []
        return [n for n in names if os.path.isfile(os.path.join(real, n))] if files_only else names

    def which(self, name):
        """The host path of the program ``name`` in the usual bin directories, or None."""
        for directory in BIN_DIRS:
            candidate = '/%s/%s' % (directory, name)
            if os.path.isfile(self.real(candidate)):
                return candidate
        return None

    def write(self, path, content, changes, mode=0o644, note=None):
        """Make ``path`` hold ``content``; record the change in ``changes``. True when it differs.

        ``note`` is added to the diff header (for example where a new file's content came from).
        """
        before = self.read(path)
        if before == content:
            return False
        header = path if before is not None else '%s (absent)' % path
        changes.append({'path': path, 'diff': {
            'before': before or '', 'after': content,
            'before_header': header if not note else '%s; %s' % (header, note),
            'after_header': path}})
        if self.module.check_mode:
            return True
        real = self.real(path)
        directory = os.path.dirname(real)
        if not os.path.isdir(directory):
            self.module.fail_json(msg='%s does not exist on the host: cannot write %s' % (
                os.path.dirname(path), path))
        tmp = None
        try:
            if before is not None and self.module.params.get('backup', True):
                self.backups.append(self.backup(real))
            fd, tmp = tempfile.mkstemp(prefix='.vfio-avic-', dir=directory)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(content.encode('utf-8'))
                handle.flush()
                os.fsync(handle.fileno())
            if before is None:
                os.chmod(tmp, mode)
            self.module.atomic_move(tmp, real, unsafe_writes=False)
        except (IOError, OSError) as exc:
            written = [c['path'] for c in changes[:-1]]
            self.module.fail_json(
                msg='cannot write %s: %s. %s is unchanged%s; free space or make the file system '
                    'writable, then run again' % (
                        path, exc.strerror or exc, path,
                        ('; already written: %s' % ', '.join(written)) if written else ''),
                changed=bool(written), backups=self.backups, paths=written)
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
        return True

    @staticmethod
    def backup(real):
        """Copy ``real`` to ``real.<pid>.<time>~`` (the name Ansible's backups use) through a
        temporary file, so that a failed copy leaves no partial backup behind."""
        dest = '%s.%s.%s' % (real, os.getpid(), time.strftime('%Y-%m-%d@%H:%M:%S~'))
        fd, tmp = tempfile.mkstemp(prefix='.vfio-avic-backup-', dir=os.path.dirname(real))
        os.close(fd)
        try:
            shutil.copy2(real, tmp)
            # never over an older backup: os.rename would replace one made in the same second
            base, count = dest, 1
            while os.path.exists(dest):
                dest = '%s.%d~' % (base[:-1], count)
                count += 1
            os.rename(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest


def make_backup_dir(directory):
    """Create ``directory`` (and its parents) mode 0700 when it is missing; OSError when it cannot be."""
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)


def backup_path(directory, name, now=None, suffix='.xml'):
    """A file name in ``directory`` that no other backup of ``name`` has: the name (characters a
    file name should not carry become ``_``), the time to the microsecond, and a counter should
    the clock give the same value twice."""
    now = time.time() if now is None else now
    stamp = time.strftime('%Y%m%dT%H%M%S', time.localtime(now)) + '.%06d' % int((now % 1) * 1000000)
    base = os.path.join(directory, '%s-%s' % (re.sub(r'[^A-Za-z0-9_.-]', '_', name), stamp))
    path, counter = base + suffix, 1
    while os.path.exists(path):
        path = '%s-%d%s' % (base, counter, suffix)
        counter += 1
    return path


def write_backup(directory, name, text, suffix='.xml'):
    """Write ``text`` to a new file of ``directory`` (made by make_backup_dir()) named by
    backup_path(), mode 0600, never over another file; returns its path."""
    make_backup_dir(directory)
    while True:
        path = backup_path(directory, name, suffix=suffix)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            if os.path.exists(path):
                continue
            raise
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        return path
