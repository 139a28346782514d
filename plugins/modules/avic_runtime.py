#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_runtime
short_description: Prove from the kernel's KVM tracepoints whether AVIC runs for each guest
version_added: 0.1.0
description:
  - Samples the kernel's own KVM tracepoints for a few seconds and reports, per running
    QEMU guest (QEMU pid and libvirt domain name), the interrupts KVM delivered through
    the accelerated path (C(kvm_apicv_accept_irq)) against those it emulated
    (C(kvm_apic_accept_irq)), the AVIC exits (C(kvm_avic_incomplete_ipi),
    C(kvm_avic_unaccelerated_access), C(kvm_avic_kick_vcpu_slowpath)), doorbells and
    IOMMU GA log events, and every APICv inhibit change (C(kvm_apicv_inhibit_changed),
    or C(kvm_apicv_update_request) on older kernels) with its reason names decoded
    (DISABLED, HYPERV, PIT_REINJ, NESTED, SEV, ...).
  - Each guest gets a verdict, C(avic_active), C(avic_inhibited) (with the reasons and,
    where one maps, the audit finding that causes each) or C(no_data).
  - The sample runs in a private trace instance under tracefs that is removed afterwards,
    so no top-level tracing setting is written. The kernel itself changes one thing on
    Linux 6.1, where enabling an event, even in an instance, expands the top-level ring buffer
    from its boot-time placeholder (C(buffer_size_kb) reads 7, to be expanded to 1408, before
    and 1410 after), which no write can undo; 7.3 keeps it as it was (measured in the VM lab,
    tests/fixtures/kernels). tracefs is mounted when it is not,
    and unmounted again. Every tracefs file written is written back, also when the module
    fails or receives SIGTERM, SIGINT or SIGHUP; C(state_restored) says so. A trace
    instance a killed earlier run left behind is removed.
  - Most inhibit reasons are set when a guest starts, so a sample of a running guest shows
    them only across a start. O(restart_to_capture) restarts one guest during the sample,
    and only together with O(restart) and O(domain).
  - Never fails on a host without KVM, without tracefs or with older tracepoints; it
    reports what could be said instead.
author:
  - vfio.avic maintainers (@vfio-avic)
extends_documentation_fragment:
  - vfio.avic.libvirt_uri
options:
  duration:
    description:
      - Seconds to sample, from 1 to 60. With O(restart_to_capture) the sample covers the
        restart and then this many seconds.
    type: float
    default: 5
  guests:
    description:
      - Report only these libvirt domain names (QEMU C(-name guest=)). Empty reports every
        running guest.
    type: list
    elements: str
    default: []
  tracefs:
    description:
      - Where tracefs is. V(auto) uses a mounted tracefs (C(/sys/kernel/tracing) first) or
        the tracing directory of a mounted debugfs, and otherwise mounts tracefs on
        C(/sys/kernel/tracing) for the sample.
      - A path uses that directory, mounting tracefs there when it is not mounted.
    type: str
    default: auto
  use_instance:
    description:
      - Sample in a private trace instance (recommended).
      - V(false), or a kernel that cannot make instances, samples in the top-level buffer,
        and only when nothing uses it (nop tracer, no event enabled, empty buffer); the buffer
        is emptied again afterwards.
    type: bool
    default: true
  restart_to_capture:
    description:
      - Restart the guest O(domain) during the sample (graceful C(virsh shutdown), wait,
        C(virsh start)), so the inhibit reasons set at start are traced.
      - The one way to ask for it is O(restart_to_capture=true), O(restart=true) and O(domain)
        together; any one or two of them alone are refused before anything is sampled or
        restarted, naming what is missing.
    type: bool
    default: false
  restart:
    description:
      - The explicit consent that O(restart_to_capture) needs to restart a running guest; only
        together with O(restart_to_capture) and O(domain).
      - In check mode the guest is never restarted; the result says it would be.
    type: bool
    default: false
  domain:
    description:
      - The libvirt domain to restart with O(restart_to_capture). It must be running; only
        together with O(restart_to_capture) and O(restart).
    type: str
  restart_timeout:
    description:
      - Seconds to wait for the guest to shut down gracefully. The guest is never forced off;
        when it does not stop in time the module fails and says so.
    type: int
    default: 180
attributes:
  check_mode:
    support: full
    description: Samples in check mode too (the tracing state is left as found); a requested restart is only reported.
  diff_mode:
    support: none
    description: Changes no file.
notes:
  - O(libvirt_uri) is used to restart O(domain).
  - Needs root (tracefs and the /proc file descriptors of QEMU).
  - Interrupts that the IOMMU posts straight into a running vCPU (IOMMU AVIC) bypass KVM and
    leave no trace; a guest that only gets those reads C(no_data) or few events.
  - Events raised in interrupt context are attributed to a guest only when it is the only
    VM on the host; otherwise they are counted under C(unattributed).
  - Inhibit reason numbers are decoded with the kernel's own names when the trace prints
    them (recent kernels), else with the enum order of the running kernel's series.
seealso:
  - module: vfio.avic.avic_facts
  - name: Linux kernel tracepoints (tracefs)
    description: The tracefs interface, instances and event switches.
    link: https://docs.kernel.org/trace/ftrace.html
'''

EXAMPLES = r'''
- name: Sample every running guest for 5 seconds
  vfio.avic.avic_runtime:
  register: avic_runtime

- name: Show each guest's runtime verdict
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.verdict }} - {{ item.message }}"
  loop: "{{ avic_runtime.guests }}"

- name: Restart win11 during a 10 s sample to name the inhibits set at its start
  vfio.avic.avic_runtime:
    duration: 10
    guests: [win11]
    restart_to_capture: true
    restart: true
    domain: win11
'''

RETURN = r'''
guests:
  description: One entry per running QEMU guest (filtered by O(guests)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Libvirt domain name (QEMU C(-name guest=)).
      type: str
      sample: win11
    pid:
      description: QEMU process id.
      type: int
    verdict:
      description: C(avic_active), C(avic_inhibited) or C(no_data).
      type: str
      sample: avic_inhibited
    reasons:
      description:
        - Inhibit reasons holding at the end of the sample, each with C(name), C(finding)
          (the audit finding id that causes it, or null), C(scope) (host or domain),
          C(meaning) and C(transient).
      type: list
      elements: dict
      sample: [{name: PIT_REINJ, finding: pit_reinject, scope: domain, transient: false}]
    reasons_source:
      description: C(trace) (decoded from inhibit events), C(host) (kvm module parameter), or null.
      type: str
    counts:
      description:
        - C(accepted) interrupts (C(kvm_apic_accept_irq)), C(accepted_fixed) (Fixed and
          LowPrio, the ones AVIC can accelerate), C(accepted_other) by delivery mode,
          C(accelerated) (C(kvm_apicv_accept_irq), deliveries KVM made through the vAPIC),
          C(emulated) (C(kvm_inj_virq), interrupts KVM injected itself, each once; with
          C(emulated_from) C(estimate), accepted Fixed/LowPrio minus accelerated, when the
          trace has no such event), C(emulated_from), C(avic_exits) by event, C(doorbells),
          C(ga_log), C(unaccelerated_registers).
        - IPIs that AVIC delivers between running vCPUs and interrupts the IOMMU posts trace
          nothing, so they are in none of these counts.
      type: dict
    inhibit_events:
      description: Every inhibit change of this guest, decoded (C(set), C(reason), C(reason_name), C(mask), C(active), C(decoded), C(consistent), C(ts)).
      type: list
      elements: dict
    message:
      description: The verdict in words.
      type: str
    attributed_by:
      description: Events counted by how they were tied to the guest (C(thread), C(worker) for vhost and kvm-pit workers, C(sole_vm)).
      type: dict
unattributed:
  description: Counts and inhibit events from threads that belong to no running guest.
  returned: always
  type: dict
tracepoints_available:
  description: Each KVM tracepoint the module uses, and whether this kernel has it.
  returned: always
  type: dict
  sample: {kvm_apicv_accept_irq: true, kvm_apicv_update_request: false}
sampled:
  description: Whether a sample was taken.
  returned: always
  type: bool
skipped_reason:
  description: Why no sample was taken, or null.
  returned: always
  type: str
duration:
  description: Seconds actually sampled.
  returned: always
  type: float
tracefs:
  description: The tracefs directory used, or null.
  returned: always
  type: str
  sample: /sys/kernel/tracing
mounted_by_module:
  description: Whether the module mounted tracefs (it is unmounted again).
  returned: always
  type: bool
method:
  description: C(instance) (a private trace instance), C(global) (the idle top-level buffer) or null.
  returned: always
  type: str
touched:
  description: Every tracefs file the module wrote; each was written back.
  returned: always
  type: list
  elements: str
state_restored:
  description: True when every touched file reads its original value again, the instance is gone and tracefs is unmounted if the module mounted it.
  returned: always
  type: bool
errors:
  description: Problems met while restoring the tracing state (empty when C(state_restored)).
  returned: always
  type: list
  elements: str
read_errors:
  description: Problems met while reading the trace (the sample may be incomplete).
  returned: always
  type: list
  elements: str
stale_instances_removed:
  description: Trace instances of earlier, killed runs that were removed.
  returned: always
  type: list
  elements: str
host:
  description: The KVM vendor C(module), its C(accel) name (AVIC, APICv) and whether it is C(enabled).
  returned: always
  type: dict
kernel:
  description: Running kernel release.
  returned: always
  type: str
inhibit_table:
  description: Which kernel series' reason numbering decoded the inhibit reasons.
  returned: always
  type: str
lost_events:
  description: Events the kernel dropped because the buffer was full.
  returned: always
  type: int
restart:
  description:
    - C(requested), C(performed), C(domain), C(reason) when not performed, and C(shutdown_seconds).
  returned: always
  type: dict
message:
  description: The result in one sentence.
  returned: always
  type: str
  sample: "No QEMU guest runs on this host: nothing to report per guest. 0 KVM events seen in 5 s."
'''

import signal

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vfio.avic.plugins.module_utils.libvirt import virsh as libvirt_virsh
from ansible_collections.vfio.avic.plugins.module_utils.trace import capture
from ansible_collections.vfio.avic.plugins.module_utils.trace import sampler

SIGNALS = tuple(getattr(signal, name) for name in ('SIGTERM', 'SIGINT', 'SIGHUP') if hasattr(signal, name))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            duration=dict(type='float', default=5),
            guests=dict(type='list', elements='str', default=[]),
            tracefs=dict(type='str', default='auto'),
            use_instance=dict(type='bool', default=True),
            restart_to_capture=dict(type='bool', default=False),
            restart=dict(type='bool', default=False),
            domain=dict(type='str'),
            libvirt_uri=dict(type='str', default='qemu:///system'),
            restart_timeout=dict(type='int', default=180),
        ),
        supports_check_mode=True,
    )
    params = module.params
    incomplete = capture.incomplete_request(params)
    if incomplete:
        module.fail_json(msg=incomplete)
    duration = params['duration']
    if not sampler.MIN_DURATION <= duration <= sampler.MAX_DURATION:
        module.fail_json(msg='duration=%g is out of range: give %d to %d seconds' % (
            duration, sampler.MIN_DURATION, sampler.MAX_DURATION))
    if params['restart_timeout'] < 1:
        module.fail_json(msg='restart_timeout=%d must be at least 1 second' % params['restart_timeout'])
    tracefs = None if params['tracefs'] in (None, '', 'auto') else params['tracefs']

    do_restart, restart_block = capture.restart_plan(params, module.check_mode)

    received = []

    def handler(signum, _frame):
        received.append(signum)

    def interrupted():
        return bool(received)

    restarter = None
    if do_restart:
        restarter = capture.Restarter(libvirt_virsh.Virsh.for_module(module, params['libvirt_uri']),
                                      params['domain'], params['restart_timeout'], interrupted)
        refused = restarter.preflight()
        if refused:
            module.fail_json(msg=refused)

    def run(argv):
        return module.run_command(argv, check_rc=False, environ_update={'LC_ALL': 'C'})

    previous = dict((sig, signal.signal(sig, handler)) for sig in SIGNALS)
    try:
        result = sampler.sample(duration, names=params['guests'] or None, tracefs=tracefs,
                                use_instance=params['use_instance'], run=run, during=restarter,
                                interrupted=interrupted)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

    during = result.pop('during', None)
    if do_restart:
        restart_block['performed'] = bool(during) and 'error' not in during
        restart_block['shutdown_seconds'] = (during or {}).get('shutdown_seconds')
        if during and 'error' in during:
            restart_block['reason'] = during['error']
    result['restart'] = restart_block
    changed = bool(restart_block['performed'] or (restart_block['requested'] and params['restart']
                                                  and module.check_mode))

    if received:
        module.fail_json(msg='interrupted by signal %d after %s s; tracing state restored: %s%s' % (
            received[0], result['duration'], result['state_restored'],
            '' if result['state_restored'] else ' (%s)' % '; '.join(result['errors'])),
            changed=changed, **result)
    if not result['state_restored']:
        module.fail_json(msg='the tracing state could not be fully restored: %s. Restore these tracefs '
                             'files by hand (write 0 to the events/kvm/*/enable files listed in touched)'
                         % '; '.join(result['errors']), changed=changed, **result)
    if do_restart and not restart_block['performed']:
        module.fail_json(msg='restart_to_capture: %s' % restart_block['reason'], changed=changed, **result)
    module.exit_json(changed=changed, **result)


if __name__ == '__main__':
    main()
