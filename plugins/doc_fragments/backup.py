# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The O(backup) option of the modules that write host files."""

    DOCUMENTATION = r'''
options:
  backup:
    description:
      - Back up a file before changing it, next to it, named as Ansible names backups
        (C(<file>.<pid>.<date>@<time>~)); a second backup in the same second gets a counter and
        never replaces the first. The backup names are returned.
    type: bool
    default: true
'''
