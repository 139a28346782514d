# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel role filters."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils import avic_kernelplan


def avic_kernel_keep_plan(facts, minimum='5.6', allow_old=False, refuse_known_issues=False):
    """The keep-mode plan from the vfio_avic fact (Debian family), without a module call."""
    if not isinstance(facts, dict) or 'os' not in facts:
        raise AnsibleFilterError('vfio.avic.avic_kernel_keep_plan expects the vfio_avic fact of '
                                 'vfio.avic.avic_facts')
    try:
        return avic_kernelplan.keep_plan(facts, str(minimum), bool(allow_old), bool(refuse_known_issues))
    except avic_kernelplan.PlanError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """Kernel role filters."""

    def filters(self):
        return {'avic_kernel_keep_plan': avic_kernel_keep_plan}
