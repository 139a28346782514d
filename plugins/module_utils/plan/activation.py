# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Activation: whether kvm_amd must be reloaded or the host rebooted, the host's state after the
role acted, and whether it may go down with the guests that run right now (stdlib only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.plan import cmdline as cmdline_plan
from ansible_collections.vfio.avic.plugins.module_utils.plan.errors import say
from ansible_collections.vfio.avic.plugins.module_utils.rules import host as host_rules
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool


def reload_plan(kvm_amd, options):
    """Whether the running kvm_amd must be reloaded to take ``options`` [(name, value)]:
    {required, loaded, differs}. ``kvm_amd`` is {loaded, parameters} as sysfs shows it; a module
    that is not loaded takes the options when it loads (required, nothing differs)."""
    kvm = kvm_amd or {}
    differs = host_rules.pending_differences(kvm.get('parameters') or {}, dict(options)) \
        if kvm.get('loaded') else {}
    return {'required': bool(differs) or not kvm.get('loaded'), 'loaded': bool(kvm.get('loaded')),
            'differs': differs}


def activation(facts, options, cmdline_args, next_boot=None, remove_keys=(), reloaded=False,
               winning_conflicts=(), target=None, names=None):
    """What activating the options needs now: {reload_needed, reboot, cmdline_pending,
    options_apply_at_boot, reasons}.

    ``reboot`` is True only when a reboot would apply something: the next boot's command line
    carries owned arguments the running one lacks, or kvm_amd runs other options and the next
    load would take the managed ones (no winning modprobe.d file, no kvm_amd.* argument of the
    next boot against them).
    """
    reload = reload_plan(facts.get('kvm_amd'), options)
    differs, reload_needed = reload['differs'], reload['required']
    decision = cmdline_plan.cmdline_decision(facts.get('cmdline') or '', next_boot, cmdline_args,
                                             remove_keys, target, names)
    reasons = [decision['reason']] if decision['reason'] else []
    option_conflicts = cmdline_plan.cmdline_option_conflicts(
        options, facts.get('cmdline'), next_boot if next_boot != facts.get('cmdline') else None,
        names)
    reasons.extend(option_conflicts)
    blocked = list(option_conflicts)
    for conflict in winning_conflicts or ():
        if conflict.get('wins', True):
            blocked.append(conflict.get('message') or str(conflict))
    apply_at_boot = bool(differs) and not reloaded and not blocked
    if differs and not reloaded and blocked:
        reasons.append('a reboot would load kvm_amd with other options than the managed ones '
                       '(see above): no reboot for them')
    return {'reload_needed': reload_needed, 'cmdline_pending': decision['pending'],
            'options_apply_at_boot': apply_at_boot,
            'reboot': bool(decision['pending'] or apply_at_boot), 'reasons': reasons,
            'differs': differs}


def event_reasons(events):
    """What happened while activating, as reasons, in this order: the reload error, the reload
    skipped for running guests, the reboot skipped (and why), the command-line edit's notes, check
    mode. ``events`` is {reload_error, reload_guests, reboot_skipped, notes, check_mode}."""
    events = events or {}
    out = []
    if events.get('reload_error'):
        out.append(str(events['reload_error']))
    if events.get('reload_guests'):
        out.append('guests are running (%s): kvm_amd was not reloaded'
                   % ', '.join(str(g) for g in events['reload_guests']))
    if events.get('reboot_skipped'):
        out.append(str(events['reboot_skipped']))
    out.extend(str(n) for n in events.get('notes') or ())
    if events.get('check_mode'):
        out.append('check mode: nothing was changed')
    return out


def final_state(facts, options, cmdline_args, reloaded=False, preflight_result=None,
                next_boot=None, remove_keys=(), winning_conflicts=(), target=None, names=None,
                events=None):
    """The host's state {state, reasons, running, wanted, ...} after the role acted.

    ``facts`` are the vfio_avic facts read after activation (or before, when nothing changed);
    ``next_boot`` the configured command line of the next boot (cmdline.next_boot_line()); the
    state follows the configured line, not whether it was just edited. ``events`` are added to
    the reasons (event_reasons()).
    """
    pre = preflight_result or {}
    if pre.get('action') in ('report', 'stop'):
        return {'state': pre['state'], 'reasons': list(pre.get('reasons') or []) + event_reasons(events),
                'warnings': list(pre.get('warnings') or []), 'running': {}, 'wanted': {},
                'reloaded': False, 'reload_needed': False, 'cmdline_pending': False,
                'reboot_needed': False}
    kvm = facts.get('kvm_amd') or {}
    params = kvm.get('parameters') or {}
    wanted = dict(options)
    plan = activation(facts, options, cmdline_args, next_boot, remove_keys, reloaded,
                      winning_conflicts, target, names)
    differs = plan['differs']
    reasons = []
    if plan['cmdline_pending']:
        reasons.extend(plan['reasons'][:1])
        others = plan['reasons'][1:]
    else:
        others = plan['reasons']
    if not kvm.get('loaded'):
        reasons.append('kvm_amd is not loaded: the options apply when it loads')
    for key, diff in sorted(differs.items()):
        reasons.append('kvm_amd %s: configured %s, running %s' % (key, diff['configured'],
                                                                  diff['running']))
    reasons.extend(others)
    avic_on = parse_bool(params.get('avic'))
    avic_wanted = parse_bool(wanted.get('avic', '1')) is not False
    if kvm.get('loaded') and not differs and avic_on is False and avic_wanted:
        reasons.append('kvm_amd runs with avic=N although avic=1 is set: the CPU or kernel refused '
                       'it (check dmesg)')
    if not avic_wanted:
        reasons.append('AVIC is turned off on purpose (avic=0, %s: false)' % say(names, 'avic'))
    guests = facts.get('guests') or []
    if differs and guests:
        reasons.append('guests are running (%s): kvm_amd cannot be reloaded until they stop'
                       % ', '.join(guest_labels(guests)))
    if facts.get('container') and (differs or not kvm.get('loaded')):
        reasons.append('in a %s container the module belongs to the container host' % facts['container'])
    if reloaded and differs:
        reasons.insert(0, 'kvm_amd was reloaded but still runs different options: the kernel '
                          'refused them (check dmesg)')
        state = 'failed'
    elif plan['cmdline_pending']:
        state = 'pending_reboot'
    elif differs or not kvm.get('loaded'):
        state = 'pending_reload'
    elif not avic_wanted:
        state = 'disabled'
    elif avic_on or avic_on is None:
        state = 'active'
    else:
        state = 'failed'
    return {'state': state, 'reasons': reasons + event_reasons(events),
            'warnings': list(pre.get('warnings') or []),
            'running': dict((k, params.get(k)) for k in sorted(wanted) if k in params),
            'wanted': wanted, 'reloaded': bool(reloaded),
            'reload_needed': plan['reload_needed'],
            'cmdline_pending': plan['cmdline_pending'],
            'reboot_needed': plan['reboot']}


# --- running guests, right before a reload or a reboot ------------------------------------------

def guest_labels(guests):
    """Readable names of running QEMU guests: the libvirt name, or ``pid N (no name)``."""
    return sorted(str(g.get('name')) if g.get('name') else 'pid %s (no name)' % g.get('pid')
                  for g in guests or [])


def reboot_guard(guests, libvirt_running=None, shutdown=False, container=None, check_mode=False,
                 option_names=None):
    """Whether a host may go down now, from the guests read right before: {action, shutdown,
    guests, reason}.

    ``guests`` are the QEMU processes (vfio_avic.guests), ``libvirt_running`` the names
    ``virsh list --state-running`` printed (None when virsh could not be asked). ``action`` is
    ``proceed`` (nothing runs), ``shutdown`` (shut ``shutdown`` down first: only libvirt domains,
    by name), ``skip`` or ``report`` (check mode, container); ``reason`` says why, naming the
    shutdown option as ``option_names['shutdown_guests']`` (the caller's name for it).
    """
    names = sorted(set(n for n in (libvirt_running or []) if n))
    known = set(names)
    others = [g for g in guests or [] if not g.get('name') or g.get('name') not in known]
    if libvirt_running is None:
        names = sorted(set(g['name'] for g in guests or [] if g.get('name')))
        others = [g for g in guests or [] if not g.get('name')]
    labels = sorted(set(names) | set(guest_labels(others)))
    if container:
        return {'action': 'report', 'shutdown': [], 'guests': labels,
                'reason': 'in a %s container the reboot belongs to the container host: not '
                          'rebooted' % container}
    if not labels:
        if check_mode:
            return {'action': 'report', 'shutdown': [], 'guests': [],
                    'reason': 'check mode: the host would be rebooted now'}
        return {'action': 'proceed', 'shutdown': [], 'guests': [], 'reason': None}
    if not shutdown:
        return {'action': 'skip', 'shutdown': [], 'guests': labels,
                'reason': 'guests are running (%s): reboot skipped; set %s: true to shut them '
                          'down first' % (', '.join(labels), say(option_names, 'shutdown_guests'))}
    if others:
        return {'action': 'skip', 'shutdown': [], 'guests': labels,
                'reason': 'QEMU processes that libvirt does not manage are running (%s): they '
                          'cannot be shut down by name; reboot skipped, stop them first'
                          % ', '.join(guest_labels(others))}
    if check_mode:
        return {'action': 'report', 'shutdown': names, 'guests': labels,
                'reason': 'check mode: %s would be shut down and the host rebooted' % ', '.join(names)}
    return {'action': 'shutdown', 'shutdown': names, 'guests': labels, 'reason': None}
