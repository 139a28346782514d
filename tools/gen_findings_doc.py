"""Write docs/findings.md from the finding vocabulary in plugins/module_utils/findings.py."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, '.build', 'collections'))

from ansible_collections.vfio.avic.plugins.module_utils.findings import FINDING_IDS  # noqa: E402

HEADER = """# Finding ids

Every audit result is `{id, severity, message, fix}`. `severity` is `inhibit` (AVIC is off
because of it), `warning` or `info`. Ids are stable: match on them in playbooks. A message says
"known" where the rule was read in kernel, QEMU or libvirt sources or documentation, and
"reported" where it rests on user reports.
"""

TITLES = (
    ('host', 'Host (`avic_facts` findings)'),
    ('kernel', 'Kernel (`kernel_avic_issues`, also in host findings)'),
    ('domain', 'Domain (`domain_avic_issues`)'),
)


def main():
    out = [HEADER]
    scopes = [s for s, _t in TITLES] + sorted(set(v[0] for v in FINDING_IDS.values()) - set(s for s, _t in TITLES))
    titles = dict(TITLES)
    for scope in scopes:
        out += ['## ' + titles.get(scope, scope.capitalize()), '', '| id | meaning |', '|---|---|']
        out += ['| `%s` | %s |' % (key, meaning.replace('|', '\\|'))
                for key, (sc, meaning) in FINDING_IDS.items() if sc == scope]
        out.append('')
    with open(os.path.join(REPO, 'docs', 'findings.md'), 'w') as handle:
        handle.write('\n'.join(out))


if __name__ == '__main__':
    main()
