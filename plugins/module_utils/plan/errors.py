# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input to a plan, named by field (stdlib only).

module_utils knows its own field names (``force_avic``, ``extra_options``, ``remove``...), not
what a module option or a role variable is called: a message writes a field as ``{field}``, and
the caller renders it with the names its user wrote (render(names), say(names, field)).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def say(names, field):
    """What the user calls ``field``: ``names[field]``, else the field name itself."""
    return (names or {}).get(field) or field


def fill(template, fields, names=None):
    """``template`` with each ``{field}`` of ``fields`` replaced by say(names, field)."""
    text = template
    for field in fields:
        text = text.replace('{%s}' % field, say(names, field))
    return text


class PlanError(ValueError):
    """An input the user must fix: ``fields`` are the fields named in ``template`` as {field}.

    str() names the fields as they are; render(names) as the caller's user wrote them.
    """

    def __init__(self, template, fields=()):
        self.template = template
        self.fields = tuple(fields)
        ValueError.__init__(self, fill(template, self.fields))

    def render(self, names=None):
        """The message with each field named as in ``names`` (field -> what the user wrote)."""
        return fill(self.template, self.fields, names)
