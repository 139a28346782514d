# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fix of a Proxmox VE guest (stdlib only): the ``qm set`` arguments and the custom CPU model
of /etc/pve/virtual-guest/cpu-models.conf that turn its AVIC inhibitors off, decided per host by
the same rules as the audit. The avic_proxmox_guest module applies the plan."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

from ansible_collections.vfio.avic.plugins.module_utils.guests import proxmox as proxmox_guest
from ansible_collections.vfio.avic.plugins.module_utils.parse.boolean import parse_bool
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain as domain_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import domain_host
from ansible_collections.vfio.avic.plugins.module_utils.rules import hyperv as hyperv_rules
from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules


def merge_cpu_model(text, name, section_text):
    """The text of cpu-models.conf with the model ``name`` (``section_text``, as fix_plan() writes
    it) added at the end; every other line is kept as it is. Unchanged when the file already has
    that model; raises proxmox_guest.ProxmoxConfigError when it has a different model of that name."""
    text = text or ''
    existing = proxmox_guest.parse_cpu_models(text)
    if name in existing:
        if existing[name] == proxmox_guest.parse_cpu_models(section_text)[name]:
            return text
        raise proxmox_guest.ProxmoxConfigError(
            '/etc/pve/virtual-guest/cpu-models.conf already has a different cpu-model %s: rename '
            'or remove that section (the vfio.avic models are named %s<model>-<digest>)'
            % (name, MODEL_PREFIX))
    if text and not text.endswith('\n'):
        text += '\n'
    return text + ('\n' if text.strip() and not text.endswith('\n\n') else '') + section_text


MODEL_FLAGS = {'x2apic_exposed': '-x2apic', 'svm_exposed': '-svm',
               'hyperv_synic': '+hv-avic', 'hyperv_stimer': '+hv-avic'}
# SynIC and stimer dropped instead of hv-avic. QEMU refuses '-hv_synic' (it turns '_' into '-' only
# in key=value options: "Property 'max-x86_64-cpu.hv_synic' not found", QEMU 7.2), so the model
# says '-hv-synic': qemu-server then passes both its hv_synic and -hv-synic, and QEMU applies the
# -flag last (x86_cpu_parse_featurestr; it warns "Ambiguous CPU model string")
HV_REMOVE_FLAGS = ('-hv-synic', '-hv-stimer')
HYPERV_CHOICES = ('auto', 'avic', 'remove', 'keep')
PIT_ARGS = '-global kvm-pit.lost_tick_policy=discard'
MODEL_PREFIX = 'avic-'


def _model_name(base, section):
    # the name carries a digest of the model, so that guests whose hosts decide differently never
    # share (and overwrite) one model
    digest = hashlib.sha1(repr(sorted(section.items())).encode('utf-8')).hexdigest()[:6]
    return '%s%s-%s' % (MODEL_PREFIX, re.sub(r'[^A-Za-z0-9-]', '-', base).strip('-')[:30], digest)


def hyperv_strategy(host, hyperv='auto'):
    """('avic'|'remove'|'keep', note or None) for SynIC/stimer, decided as for libvirt: hv-avic
    needs kernel 5.15 (before it SynIC inhibits AVIC whatever hv-avic says) and QEMU 6.2 (an
    unknown QEMU counts as older); raises proxmox_guest.ProxmoxConfigError when ``hyperv`` cannot be honoured."""
    if hyperv not in HYPERV_CHOICES:
        raise proxmox_guest.ProxmoxConfigError('hyperv must be one of %s, got %r' % (', '.join(HYPERV_CHOICES), hyperv))
    norm = domain_host.normalise_host(host)
    old_kernel = norm['kernel']['version'] < kernel_rules.HYPERV_AUTOEOI
    qemu = norm['qemu']
    if hyperv == 'keep':
        return 'keep', None
    if hyperv == 'avic' and old_kernel:
        raise proxmox_guest.ProxmoxConfigError(
            'hyperv: avic cannot keep AVIC on kernel %s: before 5.15 KVM inhibits AVIC as soon as '
            'SynIC is activated, whatever hv-avic says. Use hyperv: remove (or auto); nothing was '
            'changed.' % norm['kernel']['release'])
    if hyperv == 'avic' and (qemu is None or qemu < hyperv_rules.QEMU_HV_AVIC):
        raise proxmox_guest.ProxmoxConfigError(
            'hyperv: avic needs QEMU 6.2 or later for hv-avic, this host has %s. Use hyperv: remove '
            '(or auto); nothing was changed.' % ('%d.%d' % qemu if qemu else 'an unknown QEMU'))
    if hyperv == 'remove':
        return 'remove', None
    if hyperv == 'auto' and old_kernel:
        return 'remove', ('hyperv: kernel %s (older than 5.15) inhibits AVIC as soon as SynIC is '
                          'activated: SynIC and stimer are turned off' % norm['kernel']['release'])
    if hyperv == 'auto' and (qemu is None or qemu < hyperv_rules.QEMU_HV_AVIC):
        return 'remove', ('hyperv: hv-avic needs QEMU 6.2 or later, this host has %s: SynIC and '
                          'stimer are turned off' % ('%d.%d' % qemu if qemu else 'an unknown QEMU'))
    return 'avic', None


def fix_plan(conf_text, host, vmid, cpu_models=None, what='qm_conf_text', hyperv='auto'):
    """How to fix a Proxmox VE guest with ``qm set`` (nothing is run or written here).

    Returns ``fixes`` (finding ids the plan removes), ``remaining`` (ids it cannot), ``qm_set``
    (the arguments after ``qm set <vmid>``, empty when nothing changes), ``cpu_model`` (None or
    {name, text}: a section for /etc/pve/virtual-guest/cpu-models.conf, reported-model the
    guest's current model, its flags plus the fixes), and ``conf`` (the configuration after
    the change, for checking), ``findings`` (before) and ``notes``. A guest whose APIC IDs need
    x2apic keeps it; SynIC and stimer get hv-avic or are turned off as hyperv_strategy() decides.
    """
    conf = conf_text if isinstance(conf_text, dict) else proxmox_guest.parse_conf(conf_text, what)
    models = proxmox_guest.parse_cpu_models(cpu_models) if isinstance(cpu_models, str) else dict(cpu_models or {})
    qemu = domain_host.normalise_host(host)['qemu']
    findings = domain_rules.audit_summary(proxmox_guest.proxmox_summary(conf, vmid, models, what, qemu), host)
    wanted = [f['id'] for f in findings if f['severity'] != 'info']
    strategy, note = 'keep', None
    if {'hyperv_synic', 'hyperv_stimer'} & set(wanted):
        strategy, note = hyperv_strategy(host, hyperv)
    flags = []
    for ident in wanted:
        flag = MODEL_FLAGS.get(ident)
        if ident in ('hyperv_synic', 'hyperv_stimer'):
            flag = {'avic': (flag,), 'remove': HV_REMOVE_FLAGS}.get(strategy, ())
        for one in (flag if isinstance(flag, tuple) else (flag,) if flag else ()):
            if one not in flags:
                flags.append(one)
    after, qm_set, model = dict(conf), [], None
    if flags:
        cpu = proxmox_guest.parse_property_string(conf.get('cpu'), 'cputype')
        base = cpu.get('cputype') or ('kvm64' if parse_bool(conf.get('kvm'), True) else 'qemu64')
        section = {}
        if base.startswith('custom-'):
            if base[len('custom-'):] not in models:
                raise proxmox_guest.ProxmoxConfigError('%s: cpu: %r is a custom CPU model: pass cpu_models'
                                                       % (what, base))
            section = dict(models[base[len('custom-'):]])
            base = base[len('custom-'):]
        elif base in proxmox_guest.BUILTIN_MODELS:
            section = {'reported-model': proxmox_guest.BUILTIN_MODELS[base][0], 'flags': proxmox_guest.BUILTIN_MODELS[base][1]}
        else:
            section = {'reported-model': base}
        old_flags = [f for f in (section.get('flags') or '').split(';') if f]
        names = set(f[1:] for f in flags)
        section['flags'] = ';'.join([f for f in old_flags if f[1:] not in names] + flags)
        name = _model_name(base, section)
        models[name] = section
        text = 'cpu-model: %s\n%s\n' % (name, ''.join(
            '    %s %s\n' % (key, section[key]) for key in sorted(section)))
        model = {'name': name, 'text': text}
        rest = ','.join('%s=%s' % (k, v) for k, v in cpu.items() if k != 'cputype')
        after['cpu'] = 'custom-%s%s' % (name, ',' + rest if rest else '')
        qm_set += ['--cpu', after['cpu']]
    if 'pit_reinject' in wanted:
        after['args'] = (conf.get('args', '') + ' ' + PIT_ARGS).strip()
        qm_set += ['--args', after['args']]
    check = domain_rules.audit_summary(proxmox_guest.proxmox_summary(after, vmid, models, what, qemu), host)
    left = [f['id'] for f in check if f['severity'] != 'info']
    return {'fixes': [i for i in wanted if i not in left], 'remaining': left, 'qm_set': qm_set,
            'cpu_model': model, 'conf': after, 'findings': findings, 'notes': [note] if note else []}
