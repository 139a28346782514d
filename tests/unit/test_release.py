# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The changelog is antsibull-changelog's: fragments lint, the next release generates, and
CHANGELOG.md is what changelogs/changelog.yaml generates (nobody edits it by hand)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

BIN = os.path.dirname(sys.executable)
GALAXY = yaml.safe_load(open(os.path.join(REPO, 'galaxy.yml')))


def _run(argv, cwd, env=None):
    proc = subprocess.run([os.path.join(BIN, argv[0])] + argv[1:], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, '%s failed:\n%s%s' % (' '.join(argv), proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture
def copy(tmp_path):
    """The checkout's files (as git lists them) at <tmp>/ansible_collections/vfio/avic."""
    dest = tmp_path / 'ansible_collections' / 'vfio' / 'avic'
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                            stdout=subprocess.PIPE, check=True).stdout.decode().split('\0')
    for name in filter(None, listed):
        src = os.path.join(REPO, name)
        if os.path.isfile(src):
            os.makedirs(str(dest / os.path.dirname(name)), exist_ok=True)
            shutil.copy2(src, str(dest / name))
    os.makedirs(str(dest / 'changelogs' / 'fragments'), exist_ok=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path), PATH=BIN + os.pathsep + os.environ['PATH'])
    env.pop('ANSIBLE_CONFIG', None)
    return dest, env


def _version(text):
    return tuple(int(part) for part in text.split('.'))


def test_changelog_lint():
    _run(['antsibull-changelog', 'lint'], REPO)


def test_changelog_md_is_generated_from_changelog_yaml(copy):
    dest, env = copy
    _run(['antsibull-changelog', 'generate'], str(dest), env)
    with open(os.path.join(REPO, 'CHANGELOG.md')) as handle:
        assert (dest / 'CHANGELOG.md').read_text() == handle.read(), \
            'CHANGELOG.md differs from what antsibull-changelog generates: run antsibull-changelog generate'


def test_released_versions_are_below_the_next_one():
    with open(os.path.join(REPO, 'changelogs', 'changelog.yaml')) as handle:
        released = yaml.safe_load(handle)['releases']
    assert '0.1.0' in released
    assert all(_version(v) < _version(GALAXY['version']) for v in released), \
        'galaxy.yml version %s is already released: bump it' % GALAXY['version']


def test_the_next_release_generates_with_every_fragment(copy):
    dest, env = copy
    fragments = sorted(glob.glob(str(dest / 'changelogs' / 'fragments' / '*.yml')))
    # A fragment of this test's own, so the check also means something while there are none.
    (dest / 'changelogs' / 'fragments' / 'zz-release-check.yml').write_text(
        'trivial:\n  - release check of the test suite.\nminor_changes:\n  - release check entry ``x``.\n')
    _run(['antsibull-changelog', 'release', '--date', '2030-01-01'], str(dest), env)
    text = (dest / 'CHANGELOG.md').read_text()
    version = GALAXY['version']
    assert '## v%s' % version.replace('.', '\\.') in text
    assert 'release check entry <code>x</code>' in text
    assert 'release check of the test suite' not in text  # trivial entries stay out
    with open(str(dest / 'changelogs' / 'changelog.yaml')) as handle:
        release = yaml.safe_load(handle)['releases'][version]
    assert release['release_date'] == '2030-01-01'
    assert sorted(os.path.basename(f) for f in fragments) + ['zz-release-check.yml'] == sorted(release['fragments'])
    assert not glob.glob(str(dest / 'changelogs' / 'fragments' / '*.yml'))
