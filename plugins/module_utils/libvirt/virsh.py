# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one virsh wrapper of the collection, and its graceful restart (stdlib only).

``Virsh`` runs ``virsh -c <uri> ...`` through a ``run(argv) -> (rc, out, err)`` callable (a
module's run_command, in the C locale, so that domstate words and errors are virsh's own);
check() turns a failure into VirshError with the one error text (libvirt not reachable, or
which virsh command failed and what it said). restart() is the one shutdown-with-timeout-then-
start: an ACPI shutdown, a wait for the domain to be off, ``virsh destroy`` only when the caller
allows it, then the start. Domain names are always passed with ``--domain``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile
import time

# virsh domstate words of a domain whose QEMU process runs its live definition
RUNNING_STATES = ('running', 'idle', 'blocked', 'in shutdown')
PAUSED_STATES = ('paused', 'pmsuspended')
STOPPED_STATES = ('shut off', 'crashed')
INSTALL_HINT = 'install libvirt-clients (Debian/Ubuntu) or libvirt-client (Fedora/RHEL, Arch, openSUSE)'


class VirshError(Exception):
    """virsh failed; the message says which command and what virsh or libvirt said."""


def one_line(text):
    return ' '.join((text or '').split())


def is_active(state):
    """A running or paused/suspended domain still runs its live (older) definition."""
    return state in RUNNING_STATES or state in PAUSED_STATES


class Virsh(object):
    """virsh against one libvirt URI. ``binary``: the virsh path (None when not installed)."""

    def __init__(self, binary, uri, run):
        self.binary = binary
        self.uri = uri
        self._run = run

    @classmethod
    def for_module(cls, module, uri):
        """The virsh of an AnsibleModule's host (get_bin_path, run_command in the C locale)."""
        return cls(module.get_bin_path('virsh'), uri,
                   lambda argv: module.run_command(argv, environ_update={'LC_ALL': 'C'}))

    def call(self, *args):
        """(rc, out, err) of ``virsh -c URI args...``; never raises for a failed command."""
        return self._run([self.binary, '-c', self.uri] + list(args))

    def error(self, args, rc, out, err):
        """The one error text of a failed virsh command."""
        text = one_line(err or out) or 'exit code %d' % rc
        if 'failed to connect' in text.lower():
            return 'libvirt is not reachable at %s: %s (is libvirtd running?)' % (self.uri, text)
        return 'virsh %s failed: %s' % (' '.join(args), text)

    def check(self, *args):
        """The output of a virsh command that must succeed; VirshError otherwise."""
        rc, out, err = self.call(*args)
        if rc != 0:
            raise VirshError(self.error(args, rc, out, err))
        return out

    def domstate(self, name):
        return self.check('domstate', '--domain', name).strip()

    def define(self, xml_text):
        """``virsh define`` of an XML text (through a private temporary file); VirshError on failure."""
        fd, path = tempfile.mkstemp(prefix='vfio-avic-', suffix='.xml')
        try:
            with os.fdopen(fd, 'w') as handle:
                handle.write(xml_text)
            return self.check('define', '--file', path)
        finally:
            os.unlink(path)


def restart(virsh, name, timeout, force_off=False, interrupted=None, start=None,
            clock=time.time, sleep=time.sleep):
    """Shut ``name`` down gracefully, wait up to ``timeout`` seconds for it to be off, then start it.

    Without ``force_off`` a domain still running at the timeout is left running; with it, it is
    destroyed. ``interrupted()`` (optional) returning True stops the wait, the domain is not
    started again. ``start(name)`` (optional) starts it instead of ``virsh start`` (to put a
    previous definition back should the new one not start). Returns {stopped, forced, started,
    shutdown_seconds, state, error}: ``error`` is None, or says what did not happen and why.
    Raises VirshError when the shutdown request itself fails.
    """
    started_at = clock()
    result = {'stopped': False, 'forced': False, 'started': False, 'shutdown_seconds': None,
              'state': None, 'error': None}
    virsh.check('shutdown', '--domain', name)
    deadline = started_at + timeout
    while True:
        rc, out, _err = virsh.call('domstate', '--domain', name)
        result['state'] = out.strip() if rc == 0 else None
        if result['state'] in STOPPED_STATES:
            break
        if interrupted is not None and interrupted():
            result['error'] = ('interrupted while %s was shutting down (state %s); it was not started '
                               'again' % (name, result['state']))
            return result
        if clock() >= deadline:
            if not force_off:
                result['error'] = ('domain %s did not shut down within %d s (state %s); it was not '
                                   'forced off' % (name, timeout, result['state']))
                return result
            virsh.check('destroy', '--domain', name)
            result['forced'] = True
            break
        sleep(min(1, max(0.1, deadline - clock())))
    result['stopped'] = True
    result['shutdown_seconds'] = round(clock() - started_at, 1)
    if start is not None:
        start(name)
    else:
        rc, out, err = virsh.call('start', '--domain', name)
        if rc != 0:
            result['error'] = 'domain %s did not start again after its shutdown: %s' % (
                name, virsh.error(('start', '--domain', name), rc, out, err))
            return result
    result['started'] = True
    return result
