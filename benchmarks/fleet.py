"""Scale benchmark: N simulated AVIC hosts (podman containers), wall time of

  (a) ansible -m ping         the floor: what Ansible itself costs per host (median of PINGS runs)
  (b) playbooks/audit.yml     read-only audit
  (c) playbooks/site.yml      first converge
  (d) playbooks/site.yml      second run (nothing to change)

printed as seconds, as a ratio to (a), and with the module round trips per host.
Needs the lab (sudo make deps) and root. Usage:
  make bench [ARGS="--sizes 5,20,50 --forks 20"]     (or .venv/bin/python benchmarks/fleet.py ...)
Every container it starts is removed again, also after a failure.
"""

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 'localhost/vfio-avic-bookworm'
PREFIX = 'bench-avic-'
PINGS = 3  # ping runs per fleet size; their median is the floor the other steps are divided by
# (cpuinfo fixture, /sys/module fixture): a mixed fleet.
PROFILES = (
    ('zen2_epyc_7702.txt', 'zen2_avic_off'),
    ('zen4_epyc_9654.txt', 'zen4_avic_on'),
    ('zen3_ryzen_5950x.txt', 'forced'),
    ('zen2_epyc_7702.txt', 'zen2_avic_on_erratum'),
    ('intel_xeon_gold_6338.txt', 'no_kvm_amd'),
)


def sh(argv, **kw):
    return subprocess.run(argv, check=False, universal_newlines=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kw)


def start_hosts(n):
    names = []
    for i, (cpuinfo, sysmod) in zip(range(n), itertools.cycle(PROFILES)):
        name = '%s%02d' % (PREFIX, i)
        proc = sh(['podman', 'run', '-d', '--name', name, '--network', 'none', '--systemd', 'always',
                   '-v', '%s/tests/fixtures/cpuinfo/%s:/proc/cpuinfo:ro' % (REPO, cpuinfo),
                   '-v', '%s/tests/fixtures/sys_module/%s:/sys/module:ro' % (REPO, sysmod),
                   IMAGE, '/sbin/init'])
        if proc.returncode:
            raise RuntimeError('podman run %s failed: %s' % (name, proc.stdout))
        names.append(name)
    return names


def stop_hosts():
    # a loaded machine can leave a container behind from one podman rm: ask again until none is left
    for _attempt in range(3):
        listed = sh(['podman', 'ps', '-a', '--format', '{{.Names}}']).stdout.split()
        ours = [n for n in listed if n.startswith(PREFIX)]
        if not ours:
            return
        sh(['podman', 'rm', '-f', '-t', '2'] + ours)


def write_inventory(path, names):
    with open(path, 'w') as handle:
        handle.write('[avic_hosts]\n')
        for name, (cpuinfo, _sysmod) in zip(names, itertools.cycle(PROFILES)):
            # the Ryzen desktop hides AVIC in CPUID: its owner accepted force_avic
            extra = ' avic_host_force_avic=true' if cpuinfo.startswith('zen3_ryzen') else ''
            handle.write('%s ansible_connection=containers.podman.podman '
                         'ansible_python_interpreter=/usr/bin/python3%s\n' % (name, extra))


def timed(argv, env, label):
    rt_file = env['VFIO_AVIC_ROUNDTRIPS_FILE']
    if os.path.exists(rt_file):
        os.unlink(rt_file)
    start = time.monotonic()
    proc = sh(argv, env=env, cwd=REPO)
    seconds = time.monotonic() - start
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:])
        raise RuntimeError('%s failed (exit %d)' % (label, proc.returncode))
    counts = {}
    if os.path.exists(rt_file):
        with open(rt_file) as handle:
            counts = json.load(handle)
    per_host = max(counts.values()) if counts else 0
    return seconds, per_host


def run_size(n, forks, workdir):
    stop_hosts()
    names = start_hosts(n)
    inventory = os.path.join(workdir, 'inventory-%d.ini' % n)
    write_inventory(inventory, names)
    # the ansible of the interpreter that runs this script (the checkout's .venv), then PATH's
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get('PATH', '')])
    env = dict(os.environ,
               PATH=path,
               ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.build', 'collections') + ':' +
               os.environ.get('ANSIBLE_COLLECTIONS_PATH', ''),
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, 'benchmarks', 'callback_plugins'),
               ANSIBLE_CALLBACKS_ENABLED='roundtrips',
               ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
               ANSIBLE_FORKS=str(forks),
               VFIO_AVIC_ROUNDTRIPS_FILE=os.path.join(workdir, 'roundtrips.json'))
    rows = []
    # the floor is the median of PINGS runs: one ping varied by a fifth between runs here
    pings = [timed(['ansible', 'all', '-i', inventory, '-m', 'ansible.builtin.ping'], env, 'ping')
             for _run in range(PINGS)]
    base, rt = sorted(pings)[len(pings) // 2]
    rows.append(('ping (median of %s)' % ', '.join('%.1f' % p for p, _rt in pings), base, rt))
    seconds, rt = timed(['ansible-playbook', '-i', inventory, 'playbooks/audit.yml',
                         '-e', 'avic_report_dir=%s' % workdir], env, 'audit')
    rows.append(('audit', seconds, rt))
    site = os.path.join(REPO, 'playbooks', 'site.yml')
    if os.path.exists(site):
        extra = ['-e', 'avic_site_report_dir=%s' % workdir]
        seconds, rt = timed(['ansible-playbook', '-i', inventory, site] + extra, env, 'site first')
        rows.append(('site first converge', seconds, rt))
        seconds, rt = timed(['ansible-playbook', '-i', inventory, site] + extra, env, 'site second')
        rows.append(('site second run', seconds, rt))
    else:
        rows.append(('site (no playbooks/site.yml yet)', None, None))
    return base, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--sizes', default='5,20,50', help='comma-separated fleet sizes (default 5,20,50)')
    parser.add_argument('--forks', type=int, default=20)
    args = parser.parse_args()
    if not shutil.which('podman'):
        sys.exit('podman is not installed: run sudo make deps first')
    workdir = tempfile.mkdtemp(prefix='avic-bench-')
    print('machine: %d cores, %s; forks %d' % (os.cpu_count(), os.uname()[2], args.forks))
    print('%-5s %-40s %9s %8s %12s' % ('hosts', 'step', 'seconds', 'x ping', 'trips/host'))
    try:
        for n in [int(s) for s in args.sizes.split(',') if s.strip()]:
            base, rows = run_size(n, args.forks, workdir)
            for label, seconds, trips in rows:
                if seconds is None:
                    print('%-5d %-40s %9s %8s %12s' % (n, label, '-', '-', '-'))
                else:
                    print('%-5d %-40s %9.1f %8.2f %12d' % (n, label, seconds, seconds / base, trips))
            sys.stdout.flush()
    finally:
        stop_hosts()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
