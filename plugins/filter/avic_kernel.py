# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel role filters: the keep-mode plan from the vfio_avic fact, so that the kernel role
needs no module call to pin the running kernel on Debian (the one module call would add a round
trip); every other kernel decision is returned by vfio.avic.avic_kernel_select."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_select

# The kernel role's variables for the fields the kernel plan names in its messages.
ROLE_VARIABLES = {'mode': 'avic_kernel_mode', 'version': 'avic_kernel_version',
                  'minimum': 'avic_kernel_min_version', 'allow_old': 'avic_kernel_allow_old',
                  'refuse_known_issues': 'avic_kernel_refuse_known_issues', 'pin': 'avic_kernel_pin'}


def avic_kernel_keep_plan(facts, minimum='5.6', allow_old=False, refuse_known_issues=False):
    """The keep-mode plan from the vfio_avic fact (Debian family), without a module call."""
    if not isinstance(facts, dict) or 'os' not in facts:
        raise AnsibleFilterError('vfio.avic.avic_kernel_keep_plan expects the vfio_avic fact of '
                                 'vfio.avic.avic_facts')
    try:
        return kernel_select.keep_plan(facts, str(minimum), bool(allow_old), bool(refuse_known_issues),
                                       ROLE_VARIABLES)
    except kernel_select.PlanError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """Kernel role filters."""

    def filters(self):
        return {'avic_kernel_keep_plan': avic_kernel_keep_plan}
