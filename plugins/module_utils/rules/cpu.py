# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU classification from /proc/cpuinfo text (stdlib only).

The flags ``avic`` and ``x2avic`` decide support; family and model only name the
generation, for messages and for the rules that differ by generation.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.vfio.avic.plugins.module_utils.parse import cpuinfo

VENDORS = {
    'AuthenticAMD': 'amd',
    'HygonGenuine': 'hygon',
    'GenuineIntel': 'intel',
}

# (family, first model, last model, microarchitecture, segment)
# Ranges are the kernel's own (arch/x86/kernel/cpu/amd.c, bsp_init_amd, the
# X86_FEATURE_ZEN1..ZEN6 switch): Zen 1 0x17/0x00-0x2f, 0x50-0x5f; Zen 2
# 0x17/0x30-0x4f, 0x60-0x7f, 0x90-0x91, 0xa0-0xaf; Zen 3 0x19/0x00-0x0f,
# 0x20-0x5f; Zen 4 0x19/0x10-0x1f, 0x60-0xaf; Zen 5 0x1a/0x00-0x2f, 0x40-0x4f,
# 0x60-0x7f; Zen 6 0x1a/0x50-0x5f, 0x80-0xaf, 0xc0-0xcf ("x86/CPU/AMD: Add
# X86_FEATURE_ZEN6", "x86/CPU/AMD: Extend Zen6 model range"). The kernel does
# not tell Zen+ apart from Zen; Zen+ models are Pinnacle Ridge (0x08) and
# Picasso (0x18). The segment (server/client) only shapes messages: client parts
# often hide AVIC in CPUID.
ZEN_RANGES = (
    (0x17, 0x08, 0x08, 'zen+', 'client'),
    (0x17, 0x18, 0x18, 'zen+', 'client'),
    (0x17, 0x00, 0x07, 'zen', 'server'),
    (0x17, 0x09, 0x17, 'zen', 'client'),
    (0x17, 0x19, 0x2f, 'zen', 'client'),
    (0x17, 0x50, 0x5f, 'zen', 'client'),
    (0x17, 0x30, 0x3f, 'zen2', 'server'),
    (0x17, 0x40, 0x4f, 'zen2', 'client'),
    (0x17, 0x60, 0x7f, 'zen2', 'client'),
    (0x17, 0x90, 0x91, 'zen2', 'client'),
    (0x17, 0xa0, 0xaf, 'zen2', 'client'),
    (0x19, 0x00, 0x0f, 'zen3', 'server'),
    (0x19, 0x20, 0x5f, 'zen3', 'client'),
    (0x19, 0x10, 0x1f, 'zen4', 'server'),
    (0x19, 0x60, 0x9f, 'zen4', 'client'),
    (0x19, 0xa0, 0xaf, 'zen4', 'server'),
    (0x1a, 0x00, 0x1f, 'zen5', 'server'),
    (0x1a, 0x20, 0x2f, 'zen5', 'client'),
    (0x1a, 0x40, 0x4f, 'zen5', 'client'),
    (0x1a, 0x60, 0x7f, 'zen5', 'client'),
    (0x1a, 0x50, 0x5f, 'zen6', None),
    (0x1a, 0x80, 0xaf, 'zen6', None),
    (0x1a, 0xc0, 0xcf, 'zen6', None),
)

# AVIC hardware came with Zen (family 0x17, Hygon 0x18): an older AMD family
# without the avic flag has no AVIC to force on.
FIRST_AVIC_FAMILY = 0x17

# Hygon Dhyana is a Zen 1 licence: family 0x18, any model.
HYGON_FAMILY = 0x18

# Families whose AVIC IPI virtualisation recent kernels turn off (erratum #1235).
ERRATUM_1235_FAMILIES = (0x17, 0x18)

STATUS_SUPPORTED = 'supported'
STATUS_CPUID_HIDDEN = 'cpuid_hidden'
STATUS_SVM_UNAVAILABLE = 'svm_unavailable'
STATUS_UNSUPPORTED_VENDOR = 'unsupported_vendor'
STATUS_NO_AVIC_HARDWARE = 'no_avic_hardware'
STATUS_VM_NO_AVIC = 'vm_no_avic'

# The kernel that names CPUID Fn8000_000A EDX bit 18 "x2avic" in /proc/cpuinfo
# ("x86/cpufeatures: Introduce x2AVIC CPUID bit", 6.0): older kernels show no
# x2avic flag even on a CPU that has it.
X2AVIC_FLAG_KERNEL = (6, 0)

_GENERATION_NAMES = {
    'zen': 'Zen', 'zen+': 'Zen+', 'zen2': 'Zen 2', 'zen3': 'Zen 3',
    'zen4': 'Zen 4', 'zen5': 'Zen 5', 'zen6': 'Zen 6',
}


def microarchitecture(vendor, family, model):
    """(microarchitecture, segment) for a vendor/family/model, or (None, None)."""
    if vendor == 'hygon' and family == HYGON_FAMILY:
        return 'zen', 'server'
    if vendor != 'amd' or family is None or model is None:
        return None, None
    for fam, first, last, arch, segment in ZEN_RANGES:
        if family == fam and first <= model <= last:
            return arch, segment
    return None, None


def generation_name(arch):
    """Human name of a microarchitecture id ('zen4' -> 'Zen 4')."""
    return _GENERATION_NAMES.get(arch, arch or 'unknown generation')


def _message(cpu):
    vendor = cpu['vendor']
    name = cpu['model_name'] or 'this CPU'
    status = cpu['status']
    if vendor == 'unknown':
        return ('No CPU could be read from /proc/cpuinfo (empty or not cpuinfo text); '
                'AVIC support is unknown.')
    if status == STATUS_UNSUPPORTED_VENDOR:
        if vendor == 'intel':
            return ('%s is an Intel CPU: AVIC is AMD-only. Intel has APICv instead '
                    '(kvm_intel enable_apicv, on by default).' % name)
        return '%s is not an AMD or Hygon CPU: AVIC does not apply.' % name
    gen = cpu['microarchitecture']
    gen_text = ' (%s)' % generation_name(gen) if gen else ''
    if status == STATUS_SVM_UNAVAILABLE:
        if cpu['hypervisor']:
            return ('%s%s runs as a virtual machine without nested SVM: no KVM, so no AVIC. '
                    'Enable nested virtualisation on its host.' % (name, gen_text))
        return ('%s%s does not show SVM: enable SVM (AMD-V) in the firmware setup.'
                % (name, gen_text))
    if status == STATUS_NO_AVIC_HARDWARE:
        return ('%s (AMD family 0x%x, before Zen) has SVM but no AVIC: AVIC hardware came with '
                'family 0x17 (Zen). kvm_amd force_avic=1 would force a feature this CPU does not '
                'have, so the collection does not offer it.' % (name, cpu['family']))
    if status == STATUS_VM_NO_AVIC:
        return ('%s%s is a virtual machine with nested SVM but without AVIC: KVM does not '
                'virtualise AVIC for its guests, so this is not a CPUID setting to work around. '
                'Only for testing (for example a lab VM under QEMU TCG), kvm_amd force_avic=1 '
                '(kernel >= 5.19) can force it on: unsupported, it taints the kernel and gives no '
                'real acceleration.' % (name, gen_text))
    if status == STATUS_CPUID_HIDDEN:
        hint = ''
        if cpu['segment'] == 'client':
            hint = ' Client parts often hide it (reported).'
        return ('%s%s has SVM but does not advertise AVIC in CPUID.%s Only kvm_amd '
                'force_avic=1 (kernel >= 5.19) can enable it: unsupported and it taints the kernel.'
                % (name, gen_text, hint))
    if cpu['x2avic']:
        x2 = ' and x2AVIC'
    elif cpu['x2avic_visible'] is False:
        x2 = ('; whether it has x2AVIC is not visible on this kernel (/proc/cpuinfo shows the '
              'x2avic flag from kernel 6.0)')
    else:
        x2 = ' (no x2AVIC)'
    return '%s%s advertises AVIC%s.' % (name, gen_text, x2)


def _kernel_version(kernel):
    """(major, minor) of a kernel release string or tuple, or None."""
    if isinstance(kernel, (tuple, list)):
        try:
            return tuple(int(p) for p in kernel[:2])
        except (TypeError, ValueError):
            return None
    if isinstance(kernel, str):
        parts = kernel.strip().lstrip('v').split('.')
        if len(parts) >= 2 and parts[0].isdigit():
            minor = ''
            for char in parts[1]:
                if not char.isdigit():
                    break
                minor += char
            if minor:
                return int(parts[0]), int(minor)
    return None


def classify_cpu(text, kernel=None):
    """Classify /proc/cpuinfo text; never raises.

    ``kernel`` (the running release, optional) tells whether the kernel can
    show the x2avic flag at all. Returns a dict: vendor (amd, hygon, intel,
    unknown), family, model (ints or None), model_name, microarchitecture
    (zen ... zen6 or None), segment (server, client or None), booleans svm,
    npt, avic, x2avic, x2apic, hypervisor, erratum_1235, x2avic_visible
    (False when the kernel is too old to show the flag, else True; None when
    the kernel is not known), threads (processor blocks), status and message.
    """
    blocks = cpuinfo.blocks(text)
    first = blocks[0] if blocks else {}
    vendor_id = first.get('vendor_id', '')
    vendor = VENDORS.get(vendor_id, 'unknown')
    if vendor == 'unknown' and vendor_id:
        vendor = 'other'
    family = cpuinfo.number(first.get('cpu family'))
    model = cpuinfo.number(first.get('model'))
    flags = set(first.get('flags', '').split())
    arch, segment = microarchitecture(vendor, family, model)
    cpu = {
        'vendor': vendor if vendor != 'other' else 'unknown',
        'vendor_id': vendor_id or None,
        'family': family,
        'model': model,
        'model_name': first.get('model name') or None,
        'microarchitecture': arch,
        'segment': segment,
        'svm': 'svm' in flags,
        'npt': 'npt' in flags,
        'avic': 'avic' in flags,
        'x2avic': 'x2avic' in flags,
        'x2apic': 'x2apic' in flags,
        # invariant TSC (CPUID 0x80000007 EDX[8]); Linux names it nonstop_tsc. QEMU refuses to
        # start a guest that requires invtsc on a host without it.
        'invtsc': 'nonstop_tsc' in flags,
        'hypervisor': 'hypervisor' in flags,
        'erratum_1235': vendor in ('amd', 'hygon') and family in ERRATUM_1235_FAMILIES,
        'threads': len(blocks),
    }
    version = _kernel_version(kernel)
    cpu['x2avic_visible'] = None if version is None else (
        cpu['x2avic'] or version >= X2AVIC_FLAG_KERNEL)
    if vendor not in ('amd', 'hygon'):
        cpu['status'] = STATUS_UNSUPPORTED_VENDOR
    elif not cpu['svm']:
        cpu['status'] = STATUS_SVM_UNAVAILABLE
    elif not cpu['avic'] and vendor == 'amd' and family is not None and family < FIRST_AVIC_FAMILY:
        cpu['status'] = STATUS_NO_AVIC_HARDWARE
    elif not cpu['avic'] and cpu['hypervisor']:
        cpu['status'] = STATUS_VM_NO_AVIC
    elif not cpu['avic']:
        cpu['status'] = STATUS_CPUID_HIDDEN
    else:
        cpu['status'] = STATUS_SUPPORTED
    if vendor == 'other':
        cpu['message'] = ('%s (vendor %s) is not an AMD or Hygon CPU: AVIC does not apply.'
                          % (cpu['model_name'] or 'This CPU', vendor_id))
    else:
        cpu['message'] = _message(cpu)
    return cpu
