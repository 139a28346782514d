# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The O(root) option: where the host's file system is."""

    DOCUMENTATION = r'''
options:
  root:
    description:
      - Directory the host's file system is mounted below, for a mounted system image or a
        recorded fixture tree; C(/) for the host itself.
      - Commands that act on the running system (C(grubby), C(virsh), C(modprobe)) are only run
        against the host itself; the module's notes say which.
    type: path
    default: /
'''
