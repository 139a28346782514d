# -*- coding: utf-8 -*-
"""The documentation names every finding id and every role variable the code knows."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.vfio.avic.plugins.module_utils.avic_findings import FINDING_IDS

from conftest import REPO


def test_every_finding_id_is_documented():
    with open(os.path.join(REPO, 'docs', 'findings.md')) as handle:
        text = handle.read()
    missing = [key for key in FINDING_IDS if '`%s`' % key not in text]
    assert missing == [], 'add these ids to docs/findings.md: %s' % missing
