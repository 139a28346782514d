# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The trace session of a sample: KVM tracepoints on, read, and tracing left exactly as found (stdlib only).

The sample runs in a private trace instance (``instances/vfio_avic_<pid>_<n>`` under
tracefs), which the kernel gives its own buffer, event switches and ``tracing_on``: the
top-level tracing settings are not written at all (6.1 still expands the top-level ring buffer
from its boot-time placeholder when an event is enabled anywhere; nothing can undo that), and
the instance is removed at the end.
Kernels or hosts without instances fall back to the top-level buffer, and only when
nobody uses it (nop tracer, no event enabled, empty buffer); it is emptied again at the end,
so no event of the sample stays behind. Every tracefs file written
is recorded first by ``TraceState`` and written back in reverse order; ``TraceSession``
does that in ``close()``, which callers run in a ``finally`` block, also on signals.
When tracefs is not mounted, it is mounted for the sample and unmounted afterwards.

Nothing is written outside tracefs; mounts.py finds it. sampler.py runs one sample with it;
parsing and verdicts live in events.py, inhibits.py and verdict.py, the /proc work (running
guests, their threads, the KVM VM owners) in processes.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import itertools
import os
import threading
import time

from ansible_collections.vfio.avic.plugins.module_utils.trace import events as trace_events
from ansible_collections.vfio.avic.plugins.module_utils.trace.mounts import (
    DEBUGFS_TRACING, DEFAULT_MOUNT_POINT, find_tracefs, is_tracefs_dir)
from ansible_collections.vfio.avic.plugins.module_utils.trace import processes

INSTANCE_PREFIX = 'vfio_avic_'
READ_CHUNK = 1 << 16
_COUNTER = itertools.count(1)


class TracefsError(Exception):
    """tracefs cannot be used for the sample (not available, or busy); says why."""


def _read(path):
    with open(path) as handle:
        return handle.read()


def _write(path, value):
    with open(path, 'w') as handle:
        handle.write(value)


def _setting(text):
    """The value to write back for what a tracefs control file read."""
    text = (text or '').strip()
    if text in ('0*', '1*'):
        return text[0]
    return text


class TraceState(object):
    """Writes tracefs control files and remembers each one's first value to write back."""

    def __init__(self, base):
        self.base = base
        self.saved = {}
        self.order = []

    def path(self, rel):
        return os.path.join(self.base, rel)

    def remember(self, rel):
        if rel not in self.saved:
            self.saved[rel] = _read(self.path(rel))
            self.order.append(rel)
        return self.saved[rel]

    def write(self, rel, value):
        self.remember(rel)
        _write(self.path(rel), value)

    def restore(self):
        """Write every remembered value back, newest first; returns the errors."""
        errors = []
        for rel in reversed(self.order):
            original = _setting(self.saved[rel])
            try:
                if _setting(_read(self.path(rel))) != original:
                    _write(self.path(rel), original)
                if _setting(_read(self.path(rel))) != original:
                    errors.append('%s reads %r after restoring %r' % (self.path(rel),
                                                                      _read(self.path(rel)).strip(), original))
            except (IOError, OSError) as exc:
                errors.append('%s: %s' % (self.path(rel), exc))
        return errors

    @property
    def touched(self):
        return [self.path(rel) for rel in self.order]


def _buffer_entries(root):
    total = 0
    per_cpu = os.path.join(root, 'per_cpu')
    for cpu in sorted(os.listdir(per_cpu)) if os.path.isdir(per_cpu) else []:
        try:
            stats = _read(os.path.join(per_cpu, cpu, 'stats'))
        except (IOError, OSError):
            continue
        for line in stats.splitlines():
            if line.startswith('entries:'):
                total += int(line.split(':', 1)[1].strip() or 0)
    return total


def global_busy(root):
    """Why the top-level trace buffer is in use (so it must not be touched), or None."""
    tracer = _read(os.path.join(root, 'current_tracer')).strip()
    if tracer != 'nop':
        return 'the top-level tracer is %r' % tracer
    enabled = [e for e in _read(os.path.join(root, 'set_event')).split() if e]
    if enabled:
        return 'top-level events are enabled (%s)' % ', '.join(enabled[:5])
    entries = _buffer_entries(root)
    if entries:
        return 'the top-level buffer holds %d events' % entries
    return None


class TraceSession(object):
    """One sample of KVM tracepoints; use open(), start(), stop(), close() in a try/finally."""

    def __init__(self, events=trace_events.SAMPLED_EVENTS, tracefs=None, use_instance=True, run=None,
                 mounts_path='/proc/mounts', mount_point=DEFAULT_MOUNT_POINT):
        self.events = tuple(events)
        self.wanted = tracefs
        self.use_instance = use_instance
        # Runs mount/umount: argv -> (rc, stdout, stderr), e.g. AnsibleModule.run_command. Without
        # it a tracefs that is not mounted is reported instead of mounted.
        self.run = run
        self.mounts_path = mounts_path
        self.mount_point = tracefs or mount_point
        self.root = None
        self.mounted = False
        self.mounted_by_module = False
        self.method = None
        self.instance = None
        self.base = None
        self.state = None
        self.top_state = None
        self.available = []
        self.stale_removed = []
        self.errors = []
        self.read_errors = []
        self.closed = False
        self._fd = None
        self._thread = None
        self._stop = threading.Event()
        self._sink = None
        self._lock = threading.Lock()

    # -- set-up
    def _mounts(self):
        try:
            return _read(self.mounts_path)
        except (IOError, OSError):
            return ''

    def locate(self):
        """Find tracefs, mounting it when it is not mounted; raises TracefsError."""
        root = find_tracefs(self._mounts(), self.wanted)
        if root is None and not self.wanted:
            root = next((p for p in (DEFAULT_MOUNT_POINT, DEBUGFS_TRACING) if is_tracefs_dir(p)), None)
        if root is None:
            if not os.path.isdir(self.mount_point):
                raise TracefsError('%s does not exist: this kernel has no tracefs (CONFIG_TRACING)'
                                   % self.mount_point)
            if self.run is None:
                raise TracefsError('tracefs is not mounted at %s and no command runner was given to mount it'
                                   % self.mount_point)
            rc, out, err = self.run(['mount', '-t', 'tracefs', 'nodev', self.mount_point])
            if rc != 0:
                raise TracefsError('tracefs is not mounted and "mount -t tracefs nodev %s" failed: %s'
                                   % (self.mount_point, (err or out or '').strip() or 'rc=%d' % rc))
            self.mounted = True
            self.mounted_by_module = True
            if not is_tracefs_dir(self.mount_point):
                raise TracefsError('%s was mounted but has no tracing files' % self.mount_point)
            root = self.mount_point
        self.root = root
        kvm = os.path.join(root, 'events', 'kvm')
        self.available = [e for e in self.events if os.path.isdir(os.path.join(kvm, e))]
        return root

    def _remove_stale_instances(self):
        """Remove instances a killed earlier run of this module left behind."""
        instances = os.path.join(self.root, 'instances')
        for name in sorted(os.listdir(instances)) if os.path.isdir(instances) else []:
            if not name.startswith(INSTANCE_PREFIX):
                continue
            pid = name[len(INSTANCE_PREFIX):].split('_')[0]
            if pid.isdigit() and processes.pid_alive(int(pid)):
                continue
            path = os.path.join(instances, name)
            try:
                _write(os.path.join(path, 'tracing_on'), '0')
                os.rmdir(path)
                self.stale_removed.append(name)
            except (IOError, OSError) as exc:
                self.errors.append('could not remove the stale instance %s: %s' % (path, exc))

    def _make_instance(self):
        instances = os.path.join(self.root, 'instances')
        if not os.path.isdir(instances):
            return None
        name = '%s%d_%d' % (INSTANCE_PREFIX, os.getpid(), next(_COUNTER))
        path = os.path.join(instances, name)
        try:
            os.mkdir(path)
        except OSError:
            return None
        self.instance = path
        return path

    def open(self):
        """Prepare the sample: locate/mount tracefs, make the instance, enable the events."""
        self.locate()
        if not self.available:
            return self
        self._remove_stale_instances()
        base = self._make_instance() if self.use_instance else None
        if base is None:
            busy = global_busy(self.root)
            if busy:
                raise TracefsError('no trace instance could be made and %s: not touching it'
                                   % busy if self.use_instance else
                                   'use_instance is off and %s: not touching it' % busy)
            base = self.root
            self.method = 'global'
        else:
            self.method = 'instance'
        self.base = base
        self.state = TraceState(base)
        self.top_state = TraceState(self.root)
        self.state.write('tracing_on', '0')
        if self.method == 'instance' and os.path.exists(os.path.join(base, 'options', 'record-tgid')):
            # Per instance on recent kernels; on kernels where it is a top-level flag,
            # the top-level value is written back too.
            self.top_state.remember('options/record-tgid')
            try:
                self.state.write('options/record-tgid', '1')
            except (IOError, OSError):
                pass
        for event in self.available:
            self.state.write('events/kvm/%s/enable' % event, '1')
        if self.method == 'instance':
            with open(os.path.join(base, 'trace'), 'w'):
                pass
        return self

    # -- sampling
    def _drain(self):
        if self._fd is None:
            return
        while True:
            try:
                data = os.read(self._fd, READ_CHUNK)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    return
                raise
            if not data:
                return
            with self._lock:
                self._sink(data.decode('utf-8', 'replace'))

    def _loop(self):
        while not self._stop.is_set():
            try:
                self._drain()
            except (IOError, OSError) as exc:
                self.read_errors.append('reading trace_pipe: %s' % exc)
                return
            self._stop.wait(0.1)

    def start(self, sink):
        """Turn tracing on in the session's buffer; a thread feeds sink(text) until stop()."""
        if not self.available:
            return
        self._sink = sink
        self._fd = os.open(os.path.join(self.base, 'trace_pipe'), os.O_RDONLY | os.O_NONBLOCK)
        self.state.write('tracing_on', '1')
        self._thread = threading.Thread(target=self._loop, name='avic-trace-reader')
        self._thread.daemon = True
        self._thread.start()

    def stop(self):
        """Turn tracing off and read what is left."""
        if self.state is not None and os.path.exists(self.state.path('tracing_on')):
            try:
                _write(self.state.path('tracing_on'), '0')
            except (IOError, OSError) as exc:
                self.read_errors.append('turning tracing off: %s' % exc)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._fd is not None:
            try:
                self._drain()
            except (IOError, OSError) as exc:
                self.read_errors.append('reading trace_pipe: %s' % exc)

    # -- tear-down
    def close(self):
        """Leave tracing exactly as found; safe to call more than once and after errors."""
        if self.closed:
            return self.report()
        self.closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self.state is not None:
            self.errors.extend(self.state.restore())
        if self.top_state is not None:
            self.errors.extend(self.top_state.restore())
        if self.method == 'global':
            self._clear_global_buffer()
        if self.instance is not None:
            self._remove_instance()
        if self.mounted:
            self._unmount()
        return self.report()

    def _clear_global_buffer(self):
        """Empty the top-level buffer, as open() found it: events the sample did not read (a
        failure or a signal before the last read) must not stay behind for the next user."""
        try:
            with open(os.path.join(self.root, 'trace'), 'w'):
                pass  # opening 'trace' for writing with O_TRUNC clears the buffer
            left = _buffer_entries(self.root)
        except (IOError, OSError) as exc:
            self.errors.append('could not clear the top-level trace buffer %s: %s'
                               % (os.path.join(self.root, 'trace'), exc))
            return
        if left:
            self.errors.append('the top-level trace buffer still holds %d events after clearing it' % left)

    def _remove_instance(self):
        for attempt in range(20):
            try:
                os.rmdir(self.instance)
                return
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                if exc.errno != errno.EBUSY or attempt == 19:
                    self.errors.append('could not remove the trace instance %s: %s' % (self.instance, exc))
                    return
                time.sleep(0.1)

    def _unmount(self):
        for attempt in range(20):
            rc, out, err = self.run(['umount', self.mount_point])
            if rc == 0:
                self.mounted = False
                return
            if attempt == 19:
                self.errors.append('could not unmount %s: %s' % (self.mount_point, (err or out).strip()))
                return
            time.sleep(0.1)

    def report(self):
        touched = []
        for state in (self.state, self.top_state):
            if state is not None:
                touched.extend(state.touched)
        return {
            'tracefs': self.root,
            'mounted_by_module': self.mounted_by_module,
            'method': self.method,
            'instance': self.instance,
            'touched': touched,
            'stale_instances_removed': list(self.stale_removed),
            'errors': list(self.errors),
            'read_errors': list(self.read_errors),
            'state_restored': self.closed and not self.errors,
        }
