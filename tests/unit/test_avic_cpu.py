# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.rules import cpu as cpu_rules

# file -> (vendor, family, model, microarchitecture, avic, x2avic, hypervisor, status)
CPUS = {
    'zen1_epyc_7601.txt': ('amd', 0x17, 0x01, 'zen', True, False, False, 'supported'),
    'zenplus_ryzen_2700x.txt': ('amd', 0x17, 0x08, 'zen+', True, False, False, 'supported'),
    'zen2_epyc_7702.txt': ('amd', 0x17, 0x31, 'zen2', True, False, False, 'supported'),
    'zen2_ryzen_3900x.txt': ('amd', 0x17, 0x71, 'zen2', True, False, False, 'supported'),
    'zen3_epyc_7763.txt': ('amd', 0x19, 0x01, 'zen3', True, False, False, 'supported'),
    'zen3_ryzen_5950x.txt': ('amd', 0x19, 0x21, 'zen3', False, False, False, 'cpuid_hidden'),
    'zen4_epyc_9654.txt': ('amd', 0x19, 0x11, 'zen4', True, True, False, 'supported'),
    'zen4_threadripper_pro_7995wx.txt': ('amd', 0x19, 0x18, 'zen4', True, True, False, 'supported'),
    'zen5_ryzen_9950x.txt': ('amd', 0x1a, 0x44, 'zen5', False, False, False, 'cpuid_hidden'),
    'zen5_epyc_9755.txt': ('amd', 0x1a, 0x02, 'zen5', True, True, False, 'supported'),
    'hygon_c86_7185.txt': ('hygon', 0x18, 0x00, 'zen', True, False, False, 'supported'),
    'intel_xeon_gold_6338.txt': ('intel', 6, 106, None, False, False, False, 'unsupported_vendor'),
    'amd_vm_epyc_nosvm.txt': ('amd', 0x19, 0x01, 'zen3', False, False, True, 'svm_unavailable'),
    'amd_vm_epyc_svm.txt': ('amd', 0x17, 0x01, 'zen', False, False, True, 'vm_no_avic'),
    'piledriver_fx_8350.txt': ('amd', 0x15, 0x02, None, False, False, False, 'no_avic_hardware'),
}


@pytest.mark.parametrize('name', sorted(CPUS))
def test_fixture_classification(cpuinfo, name):
    vendor, family, model, arch, avic, x2avic, hypervisor, status = CPUS[name]
    cpu = cpu_rules.classify_cpu(cpuinfo(name))
    assert (cpu['vendor'], cpu['family'], cpu['model']) == (vendor, family, model)
    assert cpu['microarchitecture'] == arch
    assert (cpu['avic'], cpu['x2avic'], cpu['hypervisor']) == (avic, x2avic, hypervisor)
    assert cpu['status'] == status
    assert cpu['threads'] == 4
    assert cpu['message'] and cpu['model_name'] in cpu['message']


def test_supported_message_names_generation_and_x2avic(cpuinfo):
    cpu = cpu_rules.classify_cpu(cpuinfo('zen4_epyc_9654.txt'))
    assert 'Zen 4' in cpu['message'] and 'x2AVIC' in cpu['message']
    assert cpu['segment'] == 'server'


def test_hidden_client_part_explains_force_avic(cpuinfo):
    cpu = cpu_rules.classify_cpu(cpuinfo('zen3_ryzen_5950x.txt'))
    assert cpu['segment'] == 'client'
    assert 'force_avic' in cpu['message'] and 'reported' in cpu['message']


def test_vm_without_svm_points_at_nested_virtualisation(cpuinfo):
    cpu = cpu_rules.classify_cpu(cpuinfo('amd_vm_epyc_nosvm.txt'))
    assert 'nested' in cpu['message'] and 'virtual machine' in cpu['message']


def test_intel_points_at_apicv(cpuinfo):
    assert 'APICv' in cpu_rules.classify_cpu(cpuinfo('intel_xeon_gold_6338.txt'))['message']


def test_erratum_1235_families(cpuinfo):
    assert cpu_rules.classify_cpu(cpuinfo('zen2_epyc_7702.txt'))['erratum_1235'] is True
    assert cpu_rules.classify_cpu(cpuinfo('hygon_c86_7185.txt'))['erratum_1235'] is True
    assert cpu_rules.classify_cpu(cpuinfo('zen4_epyc_9654.txt'))['erratum_1235'] is False


@pytest.mark.parametrize('text', ['', None, 42, b'\x00\xff', 'garbage without colons\n\n\n',
                                  'processor: x\nflags: svm avic\n'])
def test_bad_input_gives_unknown_and_never_raises(text):
    cpu = cpu_rules.classify_cpu(text)
    assert cpu['vendor'] == 'unknown'
    assert cpu['status'] == 'unsupported_vendor'
    assert cpu['message']


def test_empty_and_garbled_fixtures(cpuinfo):
    for name in ('empty.txt', 'garbled.txt'):
        cpu = cpu_rules.classify_cpu(cpuinfo(name))
        assert cpu['vendor'] == 'unknown' and 'unknown' in cpu['message']


def test_other_vendor_is_named():
    cpu = cpu_rules.classify_cpu('processor\t: 0\nvendor_id\t: CentaurHauls\nflags\t: fpu\n')
    assert cpu['vendor'] == 'unknown' and 'CentaurHauls' in cpu['message']


@pytest.mark.parametrize('family,model,arch', [
    (0x17, 0x18, 'zen+'), (0x17, 0x11, 'zen'), (0x17, 0x60, 'zen2'), (0x17, 0xa0, 'zen2'),
    (0x19, 0x50, 'zen3'), (0x19, 0x61, 'zen4'), (0x19, 0xa0, 'zen4'), (0x1a, 0x24, 'zen5'),
    (0x1a, 0x70, 'zen5'), (0x17, 0xf0, None), (0x15, 0x02, None),
    # Zen 1/2/5 edges and Zen 6 (arch/x86/kernel/cpu/amd.c bsp_init_amd)
    (0x17, 0x00, 'zen'), (0x17, 0x2f, 'zen'), (0x17, 0x50, 'zen'), (0x17, 0x5f, 'zen'),
    (0x17, 0x30, 'zen2'), (0x17, 0x4f, 'zen2'), (0x17, 0x91, 'zen2'), (0x17, 0x92, None),
    (0x17, 0x8f, None), (0x17, 0xaf, 'zen2'), (0x17, 0xb0, None),
    (0x1a, 0x00, 'zen5'), (0x1a, 0x2f, 'zen5'), (0x1a, 0x30, None), (0x1a, 0x4f, 'zen5'),
    (0x1a, 0x60, 'zen5'), (0x1a, 0x7f, 'zen5'),
    (0x1a, 0x50, 'zen6'), (0x1a, 0x5f, 'zen6'), (0x1a, 0x80, 'zen6'), (0x1a, 0x8f, 'zen6'),
    (0x1a, 0xaf, 'zen6'), (0x1a, 0xb0, None), (0x1a, 0xc0, 'zen6'), (0x1a, 0xcf, 'zen6'),
    (0x1a, 0xd0, None)])
def test_kernel_model_ranges(family, model, arch):
    assert cpu_rules.microarchitecture('amd', family, model)[0] == arch


def zen6_cpuinfo(cpuinfo):
    # Stand-in: no Zen 6 /proc/cpuinfo is public yet, so this is the real Zen 5 EPYC 9755
    # fixture with the family/model of a Zen 6 part (family 0x1a model 0x50 = 26/80).
    return cpuinfo('zen5_epyc_9755.txt').replace('model\t\t: 2\n', 'model\t\t: 80\n')


def test_zen6_is_named(cpuinfo):
    cpu = cpu_rules.classify_cpu(zen6_cpuinfo(cpuinfo))
    assert (cpu['family'], cpu['model'], cpu['microarchitecture']) == (0x1a, 0x50, 'zen6')
    assert cpu['status'] == 'supported' and 'Zen 6' in cpu['message']


def test_pre_zen_amd_has_no_avic_to_force(cpuinfo):
    cpu = cpu_rules.classify_cpu(cpuinfo('piledriver_fx_8350.txt'))
    assert cpu['svm'] and cpu['npt'] and not cpu['avic']
    assert cpu['status'] == 'no_avic_hardware'
    assert 'before Zen' in cpu['message'] and 'does not offer it' in cpu['message']


def test_vm_with_nested_svm_is_not_a_hidden_cpuid_bit(cpuinfo):
    cpu = cpu_rules.classify_cpu(cpuinfo('amd_vm_epyc_svm.txt'))
    assert cpu['status'] == 'vm_no_avic'
    assert 'KVM does not virtualise AVIC' in cpu['message']
    assert 'Only for testing' in cpu['message'] and 'force_avic=1' in cpu['message']


@pytest.mark.parametrize('kernel,visible,words', [
    ('5.15.0-119-generic', False, 'not visible on this kernel'),
    ('6.0.0', True, '(no x2AVIC)'),
    (None, None, '(no x2AVIC)'),
])
def test_x2avic_flag_needs_kernel_6_0(cpuinfo, kernel, visible, words):
    # A Zen 4 EPYC on a 5.x kernel: the kernel does not name the x2avic bit yet.
    text = cpuinfo('zen4_epyc_9654.txt').replace(' x2avic', '')
    cpu = cpu_rules.classify_cpu(text, kernel)
    assert cpu['x2avic'] is False and cpu['x2avic_visible'] is visible
    assert words in cpu['message']
    if visible is False:
        assert 'no x2AVIC' not in cpu['message']


def test_x2avic_present_is_visible_on_any_kernel(cpuinfo):
    cpu = cpu_rules.classify_cpu(cpuinfo('zen4_epyc_9654.txt'), '5.15.0')
    assert cpu['x2avic'] is True and cpu['x2avic_visible'] is True
