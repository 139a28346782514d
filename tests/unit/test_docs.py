# -*- coding: utf-8 -*-
"""The documentation names every finding id and every role variable the code knows."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.vfio.avic.plugins.module_utils.findings import FINDING_IDS

from conftest import REPO


def test_every_finding_id_is_documented():
    with open(os.path.join(REPO, 'docs', 'findings.md')) as handle:
        text = handle.read()
    missing = [key for key in FINDING_IDS if '`%s`' % key not in text]
    assert missing == [], 'add these ids to docs/findings.md: %s' % missing


def test_role_variables_doc_is_current():
    import sys
    sys.path.insert(0, os.path.join(REPO, 'tools'))
    import gen_role_docs  # pylint: disable=import-error
    with open(os.path.join(REPO, 'docs', 'roles.md')) as handle:
        assert handle.read() == gen_role_docs.render(), 'run make docs'


def test_every_role_variable_has_a_default_in_defaults_main():
    import yaml
    for role in ('kernel', 'host', 'guest', 'report'):
        with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')) as handle:
            options = yaml.safe_load(handle)['argument_specs']['main']['options']
        with open(os.path.join(REPO, 'roles', role, 'defaults', 'main.yml')) as handle:
            defaults = yaml.safe_load(handle)
        assert set(options) == set(defaults), role
