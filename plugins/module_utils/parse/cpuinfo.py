# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""/proc/cpuinfo text as processor blocks (stdlib only); rules/cpu.py classifies them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def blocks(text):
    """Split cpuinfo text into a list of processor blocks (dicts of str).

    Tolerates anything: non-text input, blank text and lines without a colon
    give fewer or no blocks, never an exception.
    """
    if not isinstance(text, str):
        if isinstance(text, bytes):
            text = text.decode('utf-8', 'replace')
        else:
            return []
    blocks = []
    current = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        if ':' not in line:
            continue
        key, _sep, value = line.partition(':')
        key = key.strip()
        if key:
            current[key] = value.strip()
    if current:
        blocks.append(current)
    return [b for b in blocks if 'vendor_id' in b or 'processor' in b or 'flags' in b]


def number(value):
    """An int of a cpuinfo value (decimal, or hex with 0x), None where it is not one."""
    try:
        return int(str(value).strip(), 0) if str(value).strip().lower().startswith('0x') \
            else int(str(value).strip())
    except (TypeError, ValueError):
        return None
