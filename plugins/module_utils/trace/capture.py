# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restart one guest during a trace sample, so that the inhibit reasons set at its start are
traced (stdlib only): the request of vfio.avic.avic_runtime (restart_to_capture, restart and
domain, all three or none), and the restart itself through libvirt/virsh.restart(), never
forced off.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.libvirt import virsh as libvirt_virsh


class Restarter(object):
    """Gracefully restart one libvirt domain during the sample (libvirt/virsh.restart); never
    forces it off."""

    def __init__(self, virsh, domain, timeout, interrupted):
        self.virsh = virsh
        self.domain = domain
        self.timeout = timeout
        self.interrupted = interrupted

    def preflight(self):
        """Why the domain cannot be restarted (virsh missing, libvirt or domain not there, not
        running), or None: checked before anything is sampled."""
        if not self.virsh.binary:
            return ('restart_to_capture needs virsh to restart domain %r: %s, or leave '
                    'restart_to_capture off' % (self.domain, libvirt_virsh.INSTALL_HINT))
        try:
            state = self.virsh.domstate(self.domain)
        except libvirt_virsh.VirshError as exc:
            return 'domain %r: %s; check the domain name and libvirt_uri' % (self.domain, exc)
        if state != 'running':
            return ('domain %r is %s, not running: restart_to_capture restarts a running guest only; '
                    'start it yourself and sample its start' % (self.domain, state))
        return None

    def __call__(self):
        try:
            done = libvirt_virsh.restart(self.virsh, self.domain, self.timeout, interrupted=self.interrupted)
        except libvirt_virsh.VirshError as exc:
            return {'error': str(exc)}
        if done['error']:
            return {'error': '%s (restart_timeout=%d)' % (done['error'], self.timeout),
                    'shutdown_seconds': done['shutdown_seconds']}
        return {'shutdown_seconds': done['shutdown_seconds']}


RESTART_OPTIONS = ('restart_to_capture', 'restart', 'domain')


def incomplete_request(params):
    """An error when a restart during the sample is asked for only in part, else None.

    The one way to ask: restart_to_capture: true, restart: true (the consent) and domain, together.
    """
    given = [k for k in RESTART_OPTIONS if params[k]]
    if not given or len(given) == len(RESTART_OPTIONS):
        return None
    missing = [k for k in RESTART_OPTIONS if not params[k]]
    return ('a restart during the sample needs restart_to_capture: true, restart: true and domain '
            'together; %s given, %s missing: add %s, or leave out %s (nothing was sampled or '
            'restarted)' % (', '.join(given), ', '.join(missing), ' and '.join(missing), ', '.join(given)))


def restart_plan(params, check_mode):
    """(do the restart, the 'restart' result block before the sample); the request is complete."""
    block = {'requested': bool(params['restart_to_capture']), 'performed': False,
             'domain': params['domain'], 'reason': None, 'shutdown_seconds': None}
    if not params['restart_to_capture']:
        block['reason'] = 'not requested'
        return False, block
    if check_mode:
        block['reason'] = 'check mode: %s would be restarted' % params['domain']
        return False, block
    return True, block
