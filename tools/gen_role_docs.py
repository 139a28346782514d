"""Write docs/roles.md from each role's meta/argument_specs.yml (the one place variables are documented)."""

import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = ('kernel', 'host', 'guest', 'report', '_reboot')


def text(value):
    if isinstance(value, list):
        value = ' '.join(value)
    value = re.sub(r'C\(([^)]*)\)', r'`\1`', str(value))
    return ' '.join(value.split()).replace('|', '\\|')


def show(default):
    if isinstance(default, bool):
        return 'true' if default else 'false'
    if default == '':
        return '""'
    if isinstance(default, (list, dict)):
        return yaml.safe_dump(default, default_flow_style=True).strip()
    return default


def render():
    out = ['# Role variables', '',
           'Generated from each role\'s `meta/argument_specs.yml` by `make docs`; Ansible checks every',
           'variable against the same specs when the role runs.', '']
    for role in ROLES:
        with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')) as handle:
            spec = yaml.safe_load(handle)['argument_specs']['main']
        out += ['## vfio.avic.%s' % role, '', text(spec['short_description']) + '.', '']
        out += [text(d) for d in spec.get('description', [])]
        out += ['', '| variable | type | default | description |', '|---|---|---|---|']
        for name, opt in spec['options'].items():
            kind = opt.get('type', 'str')
            if opt.get('elements'):
                kind += ' of ' + opt['elements']
            if opt.get('choices'):
                kind += ': ' + ', '.join('`%s`' % c for c in opt['choices'])
            shown = '`%s`' % show(opt['default']) if 'default' in opt else '(required)'
            cells = (name, text(kind), shown.replace('|', '\\|'), text(opt.get('description', '')))
            out.append('| `%s` | %s | %s | %s |' % cells)
        out.append('')
    return '\n'.join(out)


def main():
    with open(os.path.join(REPO, 'docs', 'roles.md'), 'w') as handle:
        handle.write(render())


if __name__ == '__main__':
    main()
