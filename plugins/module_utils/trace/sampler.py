# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One runtime sample of the KVM tracepoints (stdlib only): which guests run, a trace session
across the sample window (trace/tracefs.py), and the verdict per guest (trace/verdict.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool
from ansible_collections.vfio.avic.plugins.module_utils.trace import processes
from ansible_collections.vfio.avic.plugins.module_utils.trace import events as trace_events
from ansible_collections.vfio.avic.plugins.module_utils.trace.tracefs import TraceSession, TracefsError
from ansible_collections.vfio.avic.plugins.module_utils.trace import verdict as trace_verdict

MIN_DURATION = 1
MAX_DURATION = 60


def host_acceleration(root='/'):
    """Which KVM vendor module runs and whether its APIC virtualisation is on."""
    reader = HostFiles(root=root)

    def param(module, name):
        value = reader.read('/sys/module/%s/parameters/%s' % (module, name))
        if value is None:
            return None
        return parse_bool(value, False)

    if reader.exists('/sys/module/kvm_amd'):
        return {'module': 'kvm_amd', 'accel': 'AVIC', 'enabled': param('kvm_amd', 'avic')}
    if reader.exists('/sys/module/kvm_intel'):
        return {'module': 'kvm_intel', 'accel': 'APICv', 'enabled': param('kvm_intel', 'enable_apicv')}
    others = [m for m in reader.listdir('/sys/module') if m.startswith('kvm_')]
    return {'module': others[0] if others else None, 'accel': None, 'enabled': None}


def sample(duration, names=None, tracefs=None, use_instance=True, run=None, root='/',
           during=None, interrupted=None, clock=time.monotonic, sleep=time.sleep, mounts_path='/proc/mounts'):
    """Sample the KVM tracepoints for ``duration`` seconds and evaluate every running guest.

    during: called once tracing runs (used to restart a guest across the sample); its
    return value is reported as ``during``. interrupted: a callable returning True when the
    caller was told to stop (signals). The tracing state is restored in every case; the
    returned dict says so in ``state_restored``.
    """
    kernel = os.uname()[2] if root == '/' else (HostFiles(root=root).read('/proc/sys/kernel/osrelease') or '').strip()
    result = {
        'kernel': kernel,
        'duration': duration,
        'host': host_acceleration(root),
        'tracepoints_available': dict((e, False) for e in trace_events.SAMPLED_EVENTS),
        'sampled': False,
        'skipped_reason': None,
        'during': None,
        'interrupted': False,
    }
    reader = HostFiles(root=root)
    guests_before = processes.running_guests(reader)
    session = TraceSession(tracefs=tracefs, use_instance=use_instance, run=run, mounts_path=mounts_path)
    agg = trace_verdict.TraceAggregator()
    started = None
    try:
        session.open()
        for event in session.available:
            result['tracepoints_available'][event] = True
        if not session.available:
            result['skipped_reason'] = ('the kvm module is not loaded or this kernel has none of the '
                                        'KVM tracepoints: nothing to sample')
        else:
            session.start(agg.feed)
            started = clock()
            if during is not None:
                result['during'] = during()
            deadline = clock() + duration
            while clock() < deadline:
                if interrupted is not None and interrupted():
                    result['interrupted'] = True
                    break
                sleep(min(0.2, max(deadline - clock(), 0)))
            session.stop()
            result['sampled'] = True
    except TracefsError as exc:
        result['skipped_reason'] = str(exc)
    except (IOError, OSError) as exc:
        result['skipped_reason'] = 'tracefs could not be used: %s' % exc
    finally:
        report = session.close()
        agg.flush()
    result.update(report)
    if started is not None:
        result['duration'] = round(clock() - started, 3)
    guests = processes.running_guests(reader)
    pids = [g['pid'] for g in guests] + [g['pid'] for g in guests_before]
    owners = processes.vm_owners(reader)
    evaluation = trace_verdict.evaluate(
        agg, guests, [e for e, ok in result['tracepoints_available'].items() if ok], kernel=kernel,
        host=result['host'], threads=processes.guest_threads(pids, reader), vm_owners=owners,
        duration=result['duration'] if result['sampled'] else None, names=names)
    if not result['sampled']:
        for guest in evaluation['guests']:
            guest['verdict'] = trace_verdict.VERDICT_NO_DATA
            guest['message'] = 'Not sampled: %s.' % (result['skipped_reason'] or 'interrupted')
    result.update(evaluation)
    result['vm_owners'] = owners
    result['message'] = _message(result, guests, names)
    return result


def _message(result, guests, names):
    if not result['sampled']:
        return 'No sample taken: %s.' % result['skipped_reason']
    listed = [g for g in guests if not names or g.get('name') in names]
    if not guests:
        return ('No QEMU guest runs on this host: nothing to report per guest. %d KVM events '
                'seen in %g s.' % (result['lines'], result['duration']))
    if not listed:
        return ('None of the requested guests (%s) runs on this host; running: %s.'
                % (', '.join(names), ', '.join(sorted(str(g.get('name')) for g in guests))))
    tally = {}
    for guest in result['guests']:
        tally[guest['verdict']] = tally.get(guest['verdict'], 0) + 1
    return '%d guests sampled for %g s: %s.' % (
        len(result['guests']), result['duration'],
        ', '.join('%d %s' % (tally[v], v) for v in trace_verdict.VERDICTS if v in tally))
