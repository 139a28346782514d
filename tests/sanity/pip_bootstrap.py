"""Offline pip bootstrap for ansible-test's sanity virtual environments.

ansible-test creates each sanity venv without pip and then runs a cached
"get-pip" script with pip-install arguments, downloading that script when it
is not cached. Where that host cannot be reached, this script stands in: it
installs the pip bundled with Python (ensurepip) and then installs the
requested packages from the configured package index.
"""

import subprocess
import sys

IGNORED = ('--no-setuptools', '--no-wheel')


def main():
    # In a subprocess: ensurepip in-process points PIP_CONFIG_FILE at /dev/null,
    # which would hide the machine's pip configuration from the install below.
    rc = subprocess.call([sys.executable, '-m', 'ensurepip', '--upgrade'])
    if rc:
        sys.exit(rc)
    args = [arg for arg in sys.argv[1:] if arg not in IGNORED]
    sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args))


if __name__ == '__main__':
    main()
