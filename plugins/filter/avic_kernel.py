# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel role filters."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_pin
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


def avic_kernel_resolve(plan, listing, minimum='5.6', allow_old=False, refuse_known_issues=False):
    """The plan after installing: the validated target checked, or the newest installed one as target."""
    if not isinstance(plan, dict) or 'dist' not in plan or 'packages' not in plan:
        raise AnsibleFilterError('vfio.avic.avic_kernel_resolve expects the plan of '
                                 'vfio.avic.avic_kernel_select')
    try:
        return kernel_select.resolve(plan, str(listing or ''), str(minimum), bool(allow_old),
                                     bool(refuse_known_issues), ROLE_VARIABLES)
    except kernel_select.PlanError as exc:
        raise AnsibleFilterError('vfio.avic.avic_kernel_resolve: %s' % exc)


def avic_kernel_ignorepkg(text, names):
    """pacman.conf text with the names merged into IgnorePkg: {content, changed, added}."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        raise AnsibleFilterError('vfio.avic.avic_kernel_ignorepkg expects a list of package names, '
                                 'got %r' % (names,))
    try:
        return kernel_pin.ignorepkg_merge(str(text or ''), list(names), ROLE_VARIABLES['pin'])
    except kernel_pin.PinError as exc:
        raise AnsibleFilterError('vfio.avic.avic_kernel_ignorepkg: %s' % exc)


class FilterModule(object):
    """Kernel role filters."""

    def filters(self):
        return {'avic_kernel_keep_plan': avic_kernel_keep_plan,
                'avic_kernel_resolve': avic_kernel_resolve,
                'avic_kernel_ignorepkg': avic_kernel_ignorepkg}
