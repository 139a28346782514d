# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.rules import kernel as kernel_rules


def ids(findings):
    return sorted(f['id'] for f in findings)


@pytest.mark.parametrize('release,version,distribution', [
    ('6.1.0-26-amd64', (6, 1, 0), True),                 # Debian
    ('6.8.0-45-generic', (6, 8, 0), True),               # Ubuntu
    ('6.6.32-1-pve', (6, 6, 32), True),                  # Proxmox
    ('6.8.12-4-pve', (6, 8, 12), True),
    ('5.14.0-427.el9.x86_64', (5, 14, 0), True),         # RHEL
    ('6.11.4-201.fc40.x86_64', (6, 11, 4), True),        # Fedora
    ('6.10.10-arch1-1', (6, 10, 10), True),              # Arch
    ('6.4.0-150600.23.25-default', (6, 4, 0), True),     # openSUSE
    ('6.18', (6, 18, 0), False),
    ('5.4.41', (5, 4, 41), False),
    ('v6.0.0', (6, 0, 0), False),
    ('6.1.0+', (6, 1, 0), False),
])
def test_parse_distribution_releases(release, version, distribution):
    parsed = kernel_rules.parse_release(release)
    assert parsed['version'] == version
    assert parsed['distribution'] is distribution


@pytest.mark.parametrize('bad', ['', 'linux', '6', 'six.one', '6.1abc', None, 61, '6.x.0'])
def test_unparseable_release_shows_the_string(bad):
    with pytest.raises(kernel_rules.KernelReleaseError) as err:
        kernel_rules.parse_release(bad)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize('release,expected', [
    ('4.4.0-210-generic', ['kernel_too_old']),
    ('4.19.0-27-amd64', ['kernel_nested_inhibits', 'kernel_no_x2avic', 'kernel_split_irqchip_only']),
    ('5.6.19', ['kernel_nested_inhibits', 'kernel_no_x2avic']),
    ('5.6.12', ['kernel_known_issue', 'kernel_nested_inhibits', 'kernel_no_x2avic']),
    # 5.4 never had the lazy-EOI code that 5.6.13 fixed: no known-issue warning there.
    ('5.4.40', ['kernel_nested_inhibits', 'kernel_no_x2avic', 'kernel_split_irqchip_only']),
    ('5.4.0-42-generic', ['kernel_nested_inhibits', 'kernel_no_x2avic', 'kernel_split_irqchip_only']),
    ('5.6.0-1-generic', ['kernel_nested_inhibits', 'kernel_no_x2avic', 'kernel_patch_unknown']),
    ('5.6.13', ['kernel_nested_inhibits', 'kernel_no_x2avic']),
    ('6.16.12', []),
    ('6.17.1', []),
    ('6.19.0', ['kernel_avic_auto']),
    ('5.15.0-119-generic', ['kernel_nested_inhibits', 'kernel_no_x2avic']),
    ('5.19.0', ['kernel_no_x2avic']),
    ('6.1.0-26-amd64', []),
    ('6.8.0-45-generic', []),
    ('6.18.2-arch1-1', ['kernel_avic_auto']),
])
def test_kernel_rules(release, expected):
    assert ids(kernel_rules.kernel_issues(release)) == expected


def test_too_old_is_an_inhibit_and_only_finding():
    findings = kernel_rules.kernel_issues('4.6.7')
    assert [f['severity'] for f in findings] == ['inhibit']
    assert '4.7' in findings[0]['fix']


def test_upstream_version_refines_a_distribution_patch_level():
    # A 5.6 distribution kernel whose upstream patch level is told by /proc/version.
    assert 'kernel_known_issue' not in ids(kernel_rules.kernel_issues('5.6.0-1-generic', '5.6.13'))
    old = kernel_rules.kernel_issues('5.6.0-1-generic', '5.6.7')
    assert 'kernel_known_issue' in ids(old)
    message = [f for f in old if f['id'] == 'kernel_known_issue'][0]['message']
    assert 'upstream 5.6.7' in message and '(known)' in message


def test_lazy_eoi_issue_names_the_real_symptom():
    message = [f for f in kernel_rules.kernel_issues('5.6.12') if f['id'] == 'kernel_known_issue'][0]
    assert 'Restrict lazy EOI update to edge-triggered interrupts' in message['message']
    assert 'level-triggered' in message['message'] and 'VFIO INTx' in message['message']
    assert 'Windows' not in message['message'] and '5.6.13' in message['fix']


def test_iommu_avic_needs_4_9():
    # kvm-4.9-1: "IOMMU part of AMD's AVIC"; 4.8 had only the IOMMU driver side.
    assert kernel_rules.IOMMU_AVIC == (4, 9)
    assert kernel_rules.capabilities('4.8.17')['iommu_avic'] is False
    assert kernel_rules.capabilities('4.9.0')['iommu_avic'] is True
    message = [f for f in kernel_rules.kernel_issues('4.8.17')
               if f['id'] == 'kernel_split_irqchip_only'][0]['message']
    assert 'IOMMU AVIC needs 4.9' in message
    assert 'IOMMU AVIC' not in [f for f in kernel_rules.kernel_issues('4.9.0')
                                if f['id'] == 'kernel_split_irqchip_only'][0]['message']


@pytest.mark.parametrize('release,vendor,family,expected', [
    ('6.16.12', 'amd', 0x17, False),     # before "Disable (x2)AVIC IPI virtualization ... #1235"
    ('6.17.0', 'amd', 0x17, True),
    ('6.18.2-arch1-1', 'amd', 0x17, True),
    ('6.17.0', 'hygon', 0x18, False),    # Hygon: only from 7.1 ...
    ('6.18.34', 'hygon', 0x18, False),
    ('6.18.35', 'hygon', 0x18, True),    # ... and the 6.18.y backport after 6.18.34
    ('7.0.3', 'hygon', 0x18, False),
    ('7.1.0', 'hygon', 0x18, True),
    ('6.18.35', 'amd', 0x19, None),      # Zen 3 does not have the erratum
    ('5.15.0', 'intel', 6, None),
])
def test_erratum_1235_workaround_by_kernel(release, vendor, family, expected):
    assert kernel_rules.erratum_1235_workaround(release, vendor, family) is expected


def cpu(**kw):
    base = {'vendor': 'amd', 'family': 0x19, 'microarchitecture': 'zen4', 'avic': True,
            'x2avic': True, 'npt': True}
    base.update(kw)
    return base


@pytest.mark.parametrize('facts,on', [
    (cpu(), True),                                                 # Zen 4 with x2AVIC
    (cpu(family=0x1a, microarchitecture='zen5'), True),            # Zen 5: family > 0x19
    (cpu(family=0x1a, microarchitecture='zen6'), True),
    (cpu(x2avic=False), False),                                    # x2AVIC hidden
    (cpu(microarchitecture='zen3'), False),                        # Zen 3 Milan: no x2AVIC, no ZEN4
    (cpu(family=0x17, microarchitecture='zen2', x2avic=True), False),
    (cpu(avic=False), False),                                      # x2AVIC without AVIC: FW_BUG
    (cpu(family=0x1a, microarchitecture='zen5', avic=False, x2avic=False), False),
])
def test_avic_auto_follows_avic_want_avic_enabled(facts, on):
    assert kernel_rules.avic_auto_enables(facts) is on


def test_avic_auto_needs_npt_and_honours_force_avic():
    assert kernel_rules.avic_auto_enables(cpu(), npt=False) is False
    assert kernel_rules.avic_auto_enables(cpu(avic=False), force_avic=True) is True


def test_avic_auto_finding_states_the_conditions_and_this_cpu():
    generic = [f for f in kernel_rules.kernel_issues('6.18.0') if f['id'] == 'kernel_avic_auto'][0]
    for words in ('x2AVIC', 'Zen 4', 'AVIC in CPUID', 'nested paging', 'HvInUseWrAllowed'):
        assert words in generic['message']
    zen3_cpu = cpu(microarchitecture='zen3', x2avic=False)
    zen3 = [f for f in kernel_rules.kernel_issues('6.18.0', cpu=zen3_cpu) if f['id'] == 'kernel_avic_auto'][0]
    assert 'auto leaves AVIC off (no x2AVIC in CPUID)' in zen3['message']
    zen4 = [f for f in kernel_rules.kernel_issues('6.18.0', cpu=cpu())
            if f['id'] == 'kernel_avic_auto'][0]
    assert 'On this CPU auto turns AVIC on.' in zen4['message']


@pytest.mark.parametrize('text,upstream', [
    ('Linux version 6.1.0-26-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) '
     '12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1 '
     '(2024-09-30)', '6.1.112'),
    ('Ubuntu 5.4.0-42.46-generic 5.4.44', '5.4.44'),
    ('Linux version 6.10.10-arch1-1 (linux@archlinux) #1 SMP', None),
    (None, None),
])
def test_upstream_from_proc_version(text, upstream):
    assert kernel_rules.upstream_from_proc_version(text) == upstream


def test_capabilities_follow_the_milestones():
    assert kernel_rules.capabilities('5.5.0') == {
        'svm_avic': True, 'iommu_avic': True, 'inkernel_irqchip': False, 'nested_coexist': False,
        'force_avic': False, 'x2avic': False, 'avic_auto': False}
    caps = kernel_rules.capabilities('6.0.0-rc1')
    assert caps['x2avic'] and caps['nested_coexist'] and not caps['avic_auto']


def test_kernel_validation_minimum_and_known_issues_are_overridable():
    # the one place that decides whether a kernel may be used: plan/kernel_select.validate
    from ansible_collections.vfio.avic.plugins.module_utils.plan import kernel_select
    assert kernel_select.validate('4.4.0')['ok'] is False
    assert kernel_select.validate('4.4.0', minimum='4.0')['ok'] is True
    assert kernel_select.validate('4.4.0', allow_old=True)['ok'] is True
    refused = kernel_select.validate('5.6.12', refuse_known_issues=True)
    assert not refused['ok'] and 'lazy EOI' in refused['refusals'][0]
    assert kernel_select.validate('5.6.12')['ok'] is True
    assert kernel_select.validate('5.4.40', minimum='4.7', refuse_known_issues=True)['ok'] is True


def test_at_least():
    assert kernel_rules.at_least('6.8.0-45-generic', '6.0')
    assert not kernel_rules.at_least('5.19.17', '6.0')
