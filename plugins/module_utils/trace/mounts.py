# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where tracefs is mounted: /proc/mounts read, tracefs and debugfs mount points ranked (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

DEFAULT_MOUNT_POINT = '/sys/kernel/tracing'
DEBUGFS_TRACING = '/sys/kernel/debug/tracing'


def parse_mounts(text):
    """[(mount point, fs type)] from /proc/mounts text."""
    mounts = []
    for line in (text or '').splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append((parts[1].replace('\\040', ' '), parts[2]))
    return mounts


def is_tracefs_dir(path):
    return os.path.isdir(os.path.join(path, 'events')) and os.path.exists(os.path.join(path, 'tracing_on'))


def find_tracefs(mounts_text, wanted=None):
    """A mounted tracefs directory: ``wanted`` when given, else the first usable one.

    tracefs mount points come first (``/sys/kernel/tracing`` before others), then the
    tracing directory of a mounted debugfs. Returns None when none is usable.
    """
    mounts = parse_mounts(mounts_text)
    if wanted:
        return wanted if is_tracefs_dir(wanted) else None
    candidates = [m for m, fstype in mounts if fstype == 'tracefs']
    candidates.sort(key=lambda m: (m != DEFAULT_MOUNT_POINT, m))
    for mount_point, fstype in mounts:
        if fstype == 'debugfs':
            candidates.append(os.path.join(mount_point, 'tracing'))
    for path in candidates:
        if is_tracefs_dir(path):
            return path
    return None
