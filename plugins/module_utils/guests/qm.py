# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qm wrapper of the avic_proxmox_guest module (stdlib only): Proxmox VE's ``qm``
(qemu-server), the documented interface to a VM's configuration, run through an AnsibleModule,
and the shell form of a qm command line that the module reports.

Qm.run() fails the module with its ``result`` and what qm said, unless the caller takes the
failure itself (``ok_fail``); with ``record`` the command goes into result['commands'].
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re


def quote(arg):
    """``arg`` as one shell word: as it is where no character needs quoting, else single-quoted."""
    return arg if re.match(r'^[A-Za-z0-9_.,=+:/@%-]+$', arg) else "'%s'" % arg.replace("'", "'\\''")


def command_line(argv):
    """The words ``argv`` as one shell command line."""
    return ' '.join(quote(a) for a in argv)


class Qm(object):
    """qm of this node; ``bin`` is its path, None when it is not installed."""

    def __init__(self, module, result):
        self.module = module
        self.result = result
        self.bin = module.get_bin_path('qm')

    def run(self, *args, **kw):
        """(rc, out, err) of ``qm args...``."""
        cmd = [self.bin] + [str(a) for a in args]
        if kw.get('record'):
            self.result['commands'].append(command_line(['qm'] + cmd[1:]))
        rc, out, err = self.module.run_command(cmd)
        if rc != 0 and not kw.get('ok_fail'):
            self.module.fail_json(msg='qm %s failed: %s' % (' '.join(str(a) for a in args),
                                                            ' '.join((err or out).split())), **self.result)
        return rc, out, err
