# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest role filters: new-guest XML from a spec, and the guest report from module results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.libvirt import domain_new


def avic_domain_xml(spec):
    """Libvirt domain XML for a new guest spec (values escaped by ElementTree)."""
    try:
        return domain_new.build(dict(spec) if spec is not None else None)
    except (domain_new.SpecError, TypeError, ValueError) as exc:
        raise AnsibleFilterError('avic_guest_new: %s' % exc)


def _ids(findings):
    return [f['id'] for f in findings or [] if isinstance(f, dict) and 'id' in f]


def guest_entry(result):
    """One avic_guest_report entry from a vfio.avic.avic_domain loop result."""
    name = (result.get('item') or {}).get('name') or result.get('invocation', {}).get('module_args', {}).get('name')
    if result.get('failed'):
        return {'name': name, 'state': 'error', 'changed': False, 'active': False,
                'findings_before': [], 'findings_after': [], 'reasons': [result.get('msg', 'failed')],
                'backup': None, 'line': '%s: error: %s' % (name, result.get('msg', 'failed'))}
    after = result.get('findings_after') or []
    inhibits = [f for f in after if f.get('severity') == 'inhibit']
    if result.get('restart_required'):
        state = 'restart_required'
    else:
        state = domain_rules.verdict(after)
    reasons = ['%s: %s' % (f['id'], f['message']) for f in inhibits] + list(result.get('notes') or [])
    if state == 'restart_required':
        reasons.insert(0, 'running with the old definition: restart it to apply the fix')
    fixed = [i for i in _ids(result.get('findings_before')) if i not in _ids(after)]
    line = '%s: %s' % (name, state.replace('_', ' '))
    if fixed:
        line += ' (fixed %s)' % ', '.join(fixed)
    if inhibits:
        line += '; still inhibited by %s' % ', '.join(_ids(inhibits))
    return {'name': name, 'state': state, 'changed': bool(result.get('changed')),
            'active': bool(result.get('active')), 'defined': bool(result.get('defined')),
            'restarted': bool(result.get('restarted')),
            'findings_before': _ids(result.get('findings_before')), 'findings_after': _ids(after),
            'reasons': reasons, 'backup': result.get('backup'), 'line': line}


def avic_guest_report(results):
    """The guest role's report from the registered loop results of vfio.avic.avic_domain."""
    if not isinstance(results, list):
        raise AnsibleFilterError('vfio.avic.avic_guest_report expects the results list of a registered '
                                 'loop of vfio.avic.avic_domain, got %s' % type(results).__name__)
    return [guest_entry(r) for r in results if isinstance(r, dict) and not r.get('skipped')]


class FilterModule(object):
    """Guest role filters."""

    def filters(self):
        return {'avic_domain_xml': avic_domain_xml, 'avic_guest_report': avic_guest_report}
