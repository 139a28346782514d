# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one boolean parser: module parameters (``Y``/``N``, ``1``/``0``), libvirt states
(``on``/``off``, ``yes``/``no``) and Proxmox VE flags (``1``/``0``) (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

TRUE_WORDS = ('y', 'yes', '1', 'true', 'on')
FALSE_WORDS = ('n', 'no', '0', 'false', 'off')


def parse_bool(value, default=None):
    """True or False for a boolean word or a bool; ``default`` for None, '' and anything else."""
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return default
