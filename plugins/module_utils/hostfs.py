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
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import tempfile
import time


class HostFiles(object):
    """Text files of a host mounted at ``root`` ('/' for the host itself)."""

    def __init__(self, module, root='/'):
        self.module = module
        self.root = os.path.abspath(root or '/')
        self.backups = []

    def real(self, path):
        """The path on this machine for the host path ``path``."""
        return os.path.join(self.root, path.lstrip('/')) if self.root != '/' else path

    def read(self, path):
        """Text of ``path`` or None when it does not exist."""
        try:
            with open(self.real(path), 'rb') as handle:
                return handle.read().decode('utf-8', 'replace')
        except (IOError, OSError):
            return None

    def exists(self, path):
        return os.path.exists(self.real(path))

    def listdir(self, directory):
        """Names of the regular files in ``directory`` (empty when it does not exist)."""
        real = self.real(directory)
        try:
            return sorted(n for n in os.listdir(real) if os.path.isfile(os.path.join(real, n)))
        except (IOError, OSError):
            return []

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
