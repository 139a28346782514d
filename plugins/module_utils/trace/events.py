# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The KVM tracepoint lines as tracefs prints them (``trace`` or ``trace_pipe``), parsed
(pure, stdlib only): one event a line,
``<comm>-<tid> [(tgid)] [cpu] <flags> <timestamp>: <event>: <fields>``. What the events mean
is in verdict.py; the inhibit reason numbers are decoded by inhibits.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.vfio.avic.plugins.module_utils.trace import inhibits

EV_APIC_ACCEPT = 'kvm_apic_accept_irq'
EV_APICV_ACCEPT = 'kvm_apicv_accept_irq'
EV_INHIBIT = 'kvm_apicv_inhibit_changed'
EV_INHIBIT_OLD = 'kvm_apicv_update_request'
EV_INCOMPLETE_IPI = 'kvm_avic_incomplete_ipi'
EV_UNACCELERATED = 'kvm_avic_unaccelerated_access'
EV_KICK_SLOWPATH = 'kvm_avic_kick_vcpu_slowpath'
EV_DOORBELL = 'kvm_avic_doorbell'
EV_GA_LOG = 'kvm_avic_ga_log'
EV_INJ_VIRQ = 'kvm_inj_virq'

# Every tracepoint the runtime check enables when the kernel has it. The AVIC exits are
# counted by their own tracepoints, which the exit handlers (avic_incomplete_ipi_interception,
# avic_unaccelerated_access_interception) emit for every such kvm_exit: kvm_exit itself,
# which fires on every exit of every guest, would add cost and nothing else.
SAMPLED_EVENTS = (EV_APIC_ACCEPT, EV_APICV_ACCEPT, EV_INHIBIT, EV_INHIBIT_OLD, EV_INCOMPLETE_IPI,
                  EV_UNACCELERATED, EV_KICK_SLOWPATH, EV_DOORBELL, EV_GA_LOG, EV_INJ_VIRQ)
AVIC_EXIT_EVENTS = (EV_INCOMPLETE_IPI, EV_UNACCELERATED, EV_KICK_SLOWPATH)

LINE_RE = re.compile(
    r'^\s*(?P<comm>.*?)-(?P<tid>\d+)\s+'
    r'(?:\(\s*(?P<tgid>-+|\d+)\)\s+)?'
    r'\[(?P<cpu>\d+)\]\s+'
    r'(?:(?P<flags>[^\s\[\]]{4,6})\s+)?'
    r'(?P<ts>\d+(?:\.\d+)?):\s+'
    r'(?P<event>\w+):\s?(?P<body>.*)$')
LOST_RE = re.compile(r'\[LOST (\d+) EVENTS\]')
ACCEPT_RE = re.compile(r'apicid (?P<apicid>[0-9a-fA-F]+) vec (?P<vec>\d+) '
                       r'\((?P<mode>\w+)\|(?P<trig>\w+)\)(?P<coalesced> \(coalesced\))?')
INHIBIT_RE = re.compile(r'(?P<verb>set|cleared) reason=(?P<reason>\d+), inhibits=0x(?P<mask>[0-9a-fA-F]+)'
                        r'(?: (?P<names>[A-Z0-9_|]+))?')
INHIBIT_OLD_RE = re.compile(r'(?P<verb>activate|deactivate) (?:bit|reason)=(?P<reason>\d+)')
UNACCEL_RE = re.compile(r'vcpu=(?P<vcpu>\d+), offset=(?P<offset>0x[0-9a-fA-F]+|0)(?:\((?P<reg>[\w ]*)\))?, '
                        r'(?P<ft>trap|fault), (?P<rw>read|write)')
GA_LOG_RE = re.compile(r'vmid=(?P<vmid>\d+), vcpuid=(?P<vcpuid>\d+)')
# Kernel workers named after the QEMU process they serve.
WORKER_RE = re.compile(r'^(?:vhost-|kvm-pit/)(\d+)$')
ACCELERABLE_MODES = ('Fixed', 'LowPrio')


class TraceFormatError(ValueError):
    """An event line whose fields do not have the format this module knows."""


def parse_line(line):
    """One tracefs line as a dict, or None for headers, comments and blank lines.

    Keys: comm, tid, tgid (None unless the record-tgid option was on), cpu, ts (float),
    flags, event, body. A ``[LOST n EVENTS]`` line gives ``{'lost': n}``.
    """
    text = line.rstrip('\n')
    if not text.strip() or text.lstrip().startswith('#'):
        return None
    match = LINE_RE.match(text)
    if not match:
        lost = LOST_RE.search(text)
        if lost:
            return {'lost': int(lost.group(1))}
        raise TraceFormatError('not a trace event line: %r' % text[:120])
    tgid = match.group('tgid')
    return {
        'comm': match.group('comm'),
        'tid': int(match.group('tid')),
        'tgid': int(tgid) if tgid and tgid.isdigit() else None,
        'cpu': int(match.group('cpu')),
        'flags': match.group('flags'),
        'ts': float(match.group('ts')),
        'event': match.group('event'),
        'body': match.group('body'),
    }


def parse_inhibit(event, body):
    """Fields of an inhibit change: {set, reason, mask (int or None), names (list or None)}."""
    if event == EV_INHIBIT:
        match = INHIBIT_RE.search(body)
        if not match:
            raise TraceFormatError('%s fields not understood: %r' % (event, body))
        names = match.group('names')
        return {
            'set': match.group('verb') == 'set',
            'reason': int(match.group('reason')),
            'mask': int(match.group('mask'), 16),
            'names': [inhibits.normalise_name(n) for n in names.split('|') if n] if names else None,
        }
    if event == EV_INHIBIT_OLD:
        match = INHIBIT_OLD_RE.search(body)
        if not match:
            raise TraceFormatError('%s fields not understood: %r' % (event, body))
        # 'deactivate' APICv means the inhibit reason was set.
        return {'set': match.group('verb') == 'deactivate', 'reason': int(match.group('reason')),
                'mask': None, 'names': None}
    raise TraceFormatError('%s is not an inhibit event' % event)


def parse_accept(body):
    """Fields of kvm_apic_accept_irq / kvm_apicv_accept_irq."""
    match = ACCEPT_RE.search(body)
    if not match:
        raise TraceFormatError('interrupt fields not understood: %r' % body)
    return {'apicid': int(match.group('apicid'), 16), 'vector': int(match.group('vec')),
            'mode': match.group('mode'), 'trigger': match.group('trig')}


def parse_unaccelerated(body):
    match = UNACCEL_RE.search(body)
    if not match:
        raise TraceFormatError('%s fields not understood: %r' % (EV_UNACCELERATED, body))
    reg = (match.group('reg') or '').strip() or match.group('offset')
    return {'vcpu': int(match.group('vcpu')), 'register': reg, 'kind': match.group('ft'),
            'access': match.group('rw')}
