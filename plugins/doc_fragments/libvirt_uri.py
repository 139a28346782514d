# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The O(libvirt_uri) option of the modules that talk to libvirt."""

    DOCUMENTATION = r'''
options:
  libvirt_uri:
    description:
      - Libvirt connection URI, passed to C(virsh -c).
    type: str
    default: qemu:///system
'''
