# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The copy of a libvirt domain's previous XML that avic_domain keeps in its backup directory
before it defines the domain again (stdlib only): one new file per change, named after the
domain and the time, readable by its owner only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time


def backup_path(directory, name, now=None):
    """A backup file name that no other backup of this domain has: the time to the microsecond,
    and a counter should the clock give the same value twice."""
    now = time.time() if now is None else now
    stamp = time.strftime('%Y%m%dT%H%M%S', time.localtime(now)) + '.%06d' % int((now % 1) * 1000000)
    base = os.path.join(directory, '%s-%s' % (re.sub(r'[^A-Za-z0-9_.-]', '_', name), stamp))
    path, counter = base + '.xml', 1
    while os.path.exists(path):
        path = '%s-%d.xml' % (base, counter)
        counter += 1
    return path


def write_backup(directory, name, text):
    """Write ``text`` to a new file of ``directory`` (created, mode 0700, when missing) named by
    backup_path(), mode 0600, never over another file; returns its path."""
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    while True:
        path = backup_path(directory, name)
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
