# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.plan import host as plan

from conftest import write_host_tree


def facts_for(tmp_path, cpuinfo_name, kernel='6.1.0-26-amd64', params=None, files=None):
    return gather_facts.gather(root=write_host_tree(tmp_path, cpuinfo_name=cpuinfo_name, kernel=kernel,
                                                    params=params, files=files))


# --- preflight ---

def test_preflight_configures_a_zen2_epyc(tmp_path):
    result = plan.preflight(facts_for(tmp_path, 'zen2_epyc_7702.txt', kernel='6.17.0'))
    assert result == {'action': 'configure', 'state': None, 'reasons': [], 'warnings': []}


def test_preflight_warns_of_erratum_1235_on_an_older_kernel(tmp_path):
    # Zen 2 on 6.1: IPI virtualisation stays on (no enable_ipiv, no workaround before 6.17).
    result = plan.preflight(facts_for(tmp_path, 'zen2_epyc_7702.txt'))
    assert result['action'] == 'configure'
    assert len(result['warnings']) == 1 and 'erratum #1235' in result['warnings'][0]
    assert '6.17' in result['warnings'][0] and 'enable_ipiv=0' in result['warnings'][0]


def test_preflight_stops_on_pre_zen_without_offering_force_avic(tmp_path):
    for force in (False, True):
        stop = plan.preflight(facts_for(tmp_path, 'piledriver_fx_8350.txt'), force_avic=force)
        assert stop['action'] == 'stop' and 'before Zen' in stop['reasons'][0]
        assert 'cannot help' in stop['reasons'][0]


def test_preflight_vm_without_avic_forces_only_for_testing(tmp_path):
    facts = facts_for(tmp_path, 'amd_vm_epyc_svm.txt', kernel='6.17.0')
    stop = plan.preflight(facts)
    assert stop['action'] == 'stop' and 'KVM does not virtualise AVIC' in stop['reasons'][0]
    assert 'force_avic=1' in stop['reasons'][0] and 'avic_host_force_avic: true' in stop['reasons'][0]
    go = plan.preflight(facts, force_avic=True)
    assert go['action'] == 'configure' and 'for testing only' in go['warnings'][0]


def test_preflight_stops_on_hidden_avic_unless_forced(tmp_path):
    facts = facts_for(tmp_path, 'zen3_ryzen_5950x.txt')
    stop = plan.preflight(facts)
    assert stop['action'] == 'stop' and stop['state'] == 'failed'
    assert 'force_avic=1' in stop['reasons'][0] and 'avic_host_force_avic: true' in stop['reasons'][0]
    go = plan.preflight(facts, force_avic=True)
    assert go['action'] == 'configure' and 'taint' in go['warnings'][0]


def test_preflight_stops_without_svm_and_reports_intel(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    nosvm = plan.preflight(facts_for(tmp_path / 'a', 'amd_vm_epyc_nosvm.txt'))
    assert nosvm['action'] == 'stop' and 'firmware' in nosvm['reasons'][0]
    assert 'avic_host_allow_no_svm' in nosvm['reasons'][0]
    intel = plan.preflight(facts_for(tmp_path / 'b', 'intel_xeon_gold_6338.txt',
                                     files={'/sys/module/kvm_intel/parameters/enable_apicv': 'Y\n'}))
    assert intel['action'] == 'report' and intel['state'] == 'unsupported'
    assert intel['reasons'] == ['Intel CPU: AVIC is AMD-only; kvm_intel APICv is on.']


def test_preflight_kernel_rules_and_overrides(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    old = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', kernel='4.4.0-210-generic')
    stop = plan.preflight(old)
    assert stop['action'] == 'stop' and 'avic_host_allow_old_kernel' in stop['reasons'][0]
    assert plan.preflight(old, allow_old_kernel=True)['action'] == 'configure'
    known = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', kernel='5.6.7')
    warned = plan.preflight(known)
    assert warned['action'] == 'configure' and warned['warnings']
    refused = plan.preflight(known, refuse_known_issues=True)
    assert refused['action'] == 'stop' and 'avic_host_refuse_known_issues' in refused['reasons'][0]


# --- options and modprobe.d ---

def test_wanted_options_defaults_force_nested_and_extra():
    assert plan.wanted_options() == [('avic', '1'), ('npt', '1'), ('nested', '0')]
    assert plan.wanted_options(True, True) == [('avic', '1'), ('npt', '1'), ('nested', '1'),
                                               ('force_avic', '1')]
    extra = plan.wanted_options(extra={'avic-ipi': False, 'sev': 1})
    assert extra[-2:] == [('avic_ipi', '0'), ('sev', '1')]
    assert plan.wanted_options(avic=False)[0] == ('avic', '0')
    with pytest.raises(plan.PlanError, match='avic_host_extra_options'):
        plan.wanted_options(extra={'bad name': 1})
    with pytest.raises(plan.PlanError, match='no spaces or quotes'):
        plan.wanted_options(extra={'x': 'a b'})


@pytest.mark.parametrize('key, variable', [('avic', 'avic_host_enabled'), ('nested', 'avic_host_nested'),
                                           ('force-avic', 'avic_host_force_avic'), ('npt', 'always written')])
def test_managed_options_are_refused_in_extra_options_by_name(key, variable):
    with pytest.raises(plan.PlanError) as err:
        plan.wanted_options(extra={key: '0'})
    assert 'avic_host_extra_options' in str(err.value) and variable in str(err.value)
    assert key.replace('-', '_') + ' is managed' in str(err.value)


def test_force_avic_with_avic_off_is_a_contradiction():
    with pytest.raises(plan.PlanError, match='avic_host_force_avic.*avic_host_enabled'):
        plan.wanted_options(force_avic=True, avic=False)


def test_modprobe_text_has_a_header_and_one_options_line():
    text = plan.modprobe_text(plan.wanted_options())
    assert text.startswith('# Managed by Ansible (vfio.avic.host)')
    assert text.splitlines()[-1] == 'options kvm_amd avic=1 npt=1 nested=0'


def test_conflicts_know_who_wins():
    files = [('/etc/modprobe.d/kvm.conf', 'options kvm-amd nested=1 avic=1\n'),
             ('/etc/modprobe.d/vfio-avic-kvm_amd.conf', plan.modprobe_text(plan.wanted_options())),
             ('/etc/modprobe.d/zz-local.conf', 'options kvm_amd avic=0 npt=1\nblacklist kvm_amd\n')]
    found = plan.conflicts(files, '/etc/modprobe.d/vfio-avic-kvm_amd.conf', plan.wanted_options())
    by = dict(((c['path'], c['option']), c) for c in found)
    assert by[('/etc/modprobe.d/kvm.conf', 'nested')]['wins'] is False
    assert by[('/etc/modprobe.d/zz-local.conf', 'avic')]['wins'] is True
    assert by[('/etc/modprobe.d/zz-local.conf', None)]['message'].endswith('blacklists kvm_amd')
    assert ('/etc/modprobe.d/kvm.conf', 'avic') not in by and ('/etc/modprobe.d/zz-local.conf', 'npt') not in by


def test_comment_conflicts_keeps_unrelated_options_and_lines():
    text = '# mine\noptions kvm_amd nested=1 sev=0\noptions kvm_intel nested=1\n'
    out = plan.comment_conflicts(text, {'nested'})
    assert out == ('# mine\n# options kvm_amd nested=1 sev=0  # disabled by vfio.avic.host\n'
                   'options kvm_amd sev=0\noptions kvm_intel nested=1\n')
    assert plan.comment_conflicts(out, {'nested'}) == out


# --- kernel command line ---

def test_owned_args_validate_and_dedupe():
    assert plan.owned_args(['amd_iommu=on', 'iommu=pt'], 'vapic', ['iommu=nopt']) == \
        ['amd_iommu=on', 'amd_iommu_intr=vapic', 'iommu=nopt']
    with pytest.raises(plan.PlanError, match='single'):
        plan.owned_args(['quiet splash'])
    with pytest.raises(plan.PlanError, match='avic_host_iommu_intr'):
        plan.owned_args([], 'posted')


def test_edit_cmdline_keeps_the_users_arguments():
    line = 'quiet amd_iommu=off splash iommu=pt mitigations=off amd_iommu=off'
    assert plan.edit_cmdline(line, ['amd_iommu=on', 'iommu=pt']) == \
        'quiet amd_iommu=on splash iommu=pt mitigations=off'
    assert plan.edit_cmdline('', ['amd_iommu=on']) == 'amd_iommu=on'
    assert plan.edit_cmdline('quiet amd_iommu_intr=legacy', [], ['amd_iommu_intr']) == 'quiet'


GRUB = '''# If you change this file, run 'update-grub' afterwards
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80"
GRUB_CMDLINE_LINUX=""
'''


def test_edit_grub_default_touches_only_its_arguments():
    out = plan.edit_grub_default(GRUB, ['amd_iommu=on', 'iommu=pt'])
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt"\n' in out
    assert out.replace('GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt"',
                       'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash vfio-pci.ids=10de:1b80"') == GRUB
    assert plan.edit_grub_default(out, ['amd_iommu=on', 'iommu=pt']) == out, 'idempotent'
    assert plan.grub_value(out) == 'quiet splash vfio-pci.ids=10de:1b80 amd_iommu=on iommu=pt'


def test_edit_grub_default_single_quotes_export_and_missing_line():
    text = "export GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n"
    assert plan.edit_grub_default(text, ['iommu=pt']) == "export GRUB_CMDLINE_LINUX_DEFAULT='quiet iommu=pt'\n"
    assert plan.edit_grub_default('GRUB_TIMEOUT=5', ['iommu=pt']) == \
        'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'
    with pytest.raises(plan.PlanError, match='quoting'):
        plan.edit_grub_default('GRUB_CMDLINE_LINUX_DEFAULT="quiet\n', ['iommu=pt'])


# --- final state ---

def test_final_state_active_pending_and_failed(tmp_path):
    opts = plan.wanted_options()
    args = ['amd_iommu=on', 'iommu=pt']
    dirs = [tmp_path / n for n in 'abcd']
    for d in dirs:
        d.mkdir()
    cmd = {'/proc/cmdline': 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 amd_iommu=on iommu=pt\n'}
    active = facts_for(dirs[0], 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'},
                       files=cmd)
    assert plan.final_state(active, opts, args)['state'] == 'active'
    # the running line already has the arguments: an edit of the configuration needs no reboot
    assert plan.final_state(active, opts, args, cmdline_changed=True)['state'] == 'active'
    off = facts_for(dirs[1], 'zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '1'},
                    files=cmd)
    pending = plan.final_state(off, opts, args)
    assert pending['state'] == 'pending_reload'
    assert 'kvm_amd avic: configured 1, running N' in pending['reasons']
    assert pending['running'] == {'avic': 'N', 'nested': '1', 'npt': 'Y'}
    assert plan.final_state(off, opts, args, reloaded=True)['state'] == 'failed'
    nocmd = facts_for(dirs[2], 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    configured = plan.final_state(nocmd, opts, args, next_boot='root=/dev/sda1 amd_iommu=on iommu=pt')
    assert configured['state'] == 'pending_reboot' and configured['reboot_needed'] is True
    unmanaged = plan.final_state(nocmd, opts, args, next_boot=None)
    assert unmanaged['state'] == 'active' and unmanaged['reboot_needed'] is False
    assert 'no reboot' in unmanaged['reasons'][0]
    unloaded = facts_for(dirs[3], 'zen4_epyc_9654.txt', files=cmd)
    result = plan.final_state(unloaded, opts, args)
    assert result['state'] == 'pending_reload' and 'not loaded' in result['reasons'][0]
    stopped = plan.final_state(active, opts, args, preflight_result={
        'action': 'stop', 'state': 'failed', 'reasons': ['x'], 'warnings': []})
    assert stopped['state'] == 'failed' and stopped['reasons'] == ['x']


def test_cmdline_target_and_needs_change():
    def exists_of(*paths):
        return lambda p: p in paths
    assert plan.cmdline_target(exists_of('/etc/default/grub')) == 'grub'
    # Proxmox booted through BIOS is GRUB (proxmox-boot-tool refresh runs grub there)
    assert plan.cmdline_target(exists_of('/etc/default/grub', '/etc/kernel/proxmox-boot-uuids')) == 'grub'
    assert plan.cmdline_target(exists_of('/etc/default/grub', '/etc/kernel/proxmox-boot-uuids',
                                         '/sys/firmware/efi', '/etc/kernel/cmdline')) == 'kernel_cmdline'
    assert plan.cmdline_target(exists_of('/boot/loader/loader.conf')) == 'kernel_cmdline'
    assert plan.cmdline_target(exists_of(), has_grubby=True) == 'grubby'
    assert plan.cmdline_target(exists_of()) == 'none'
    assert plan.cmdline_needs_change('quiet amd_iommu=on iommu=pt', ['amd_iommu=on', 'iommu=pt']) is False
    assert plan.cmdline_needs_change('quiet amd_iommu=off', ['amd_iommu=on']) is True
    assert plan.cmdline_needs_change('amd_iommu=on amd_iommu=on', ['amd_iommu=on']) is True
    assert plan.cmdline_needs_change('quiet amd_iommu_intr=legacy', [], ['amd_iommu_intr']) is True
    assert plan.cmdline_needs_change(None, ['iommu=pt']) is None


def test_facts_carry_the_configured_command_line_and_kernel_packages(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    dpkg = ('Package: linux-image-6.1.0-26-amd64\nStatus: hold ok installed\nVersion: 6.1.112-1\n\n'
            'Package: linux-image-amd64\nStatus: install ok installed\nVersion: 6.1.112-1\n\n'
            'Package: linux-image-6.1.0-9-amd64\nStatus: deinstall ok config-files\n\n'
            'Package: bash\nStatus: install ok installed\n')
    facts = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', files={
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n', '/var/lib/dpkg/status': dpkg})
    assert facts['boot_cmdline'] == {'target': 'grub', 'value': 'quiet iommu=pt',
                                     'sources': ['/etc/default/grub'], 'esp_modes': None}
    assert facts['kernel_packages'] == [
        {'package': 'linux-image-6.1.0-26-amd64', 'release': '6.1.0-26-amd64', 'held': True, 'version': '6.1.112-1'},
        {'package': 'linux-image-amd64', 'release': None, 'held': False, 'version': '6.1.112-1'}]
    other = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', files={'/etc/kernel/cmdline': 'root=ZFS=x  boot=zfs\n'})
    assert other['boot_cmdline'] == {'target': 'kernel_cmdline', 'value': 'root=ZFS=x boot=zfs',
                                     'sources': ['/etc/kernel/cmdline'], 'esp_modes': None}
    assert other['kernel_packages'] is None


# --- kernel-level splitting ---

def test_split_kernel_args_keeps_quoted_values_whole():
    line = 'quiet dyndbg="file foo.c +p"  kvm-amd.avic=1'
    assert plan.split_kernel_args(line) == ['quiet', 'dyndbg="file foo.c +p"', 'kvm-amd.avic=1']
    assert plan.arg_key('kvm-amd.avic=1') == 'kvm_amd.avic'
    assert plan.edit_cmdline(line, ['kvm_amd.avic=1']) == 'quiet dyndbg="file foo.c +p" kvm_amd.avic=1'


# --- /etc/default/grub, token by token ---

ARGS = ['amd_iommu=on', 'iommu=pt']


def grub_edit(value, tail='\n', ensure=None, remove=()):
    """Edit a one-variable file; return (new file, new line) and check the second run is a no-op."""
    ensure = ARGS if ensure is None else ensure
    text = '# top\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=%s%sGRUB_TIMEOUT=5\n' % (value, tail)
    out = plan.edit_grub_default(text, ensure, remove)
    assert plan.edit_grub_default(out, ensure, remove) == out, 'a second run changes nothing'
    assert out.startswith('# top\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=')
    assert out.endswith('%sGRUB_TIMEOUT=5\n' % tail)
    return out.split('\n')[2], plan.grub_value(out)


def test_grub_escaped_quotes_stay_as_written():
    line, value = grub_edit(r'"quiet dyndbg=\"file foo.c +p\" splash"')
    assert line == r'GRUB_CMDLINE_LINUX_DEFAULT="quiet dyndbg=\"file foo.c +p\" splash amd_iommu=on iommu=pt"'
    assert value == 'quiet dyndbg="file foo.c +p" splash amd_iommu=on iommu=pt'


def test_grub_single_quoted_and_unquoted_values():
    assert grub_edit("'quiet splash'")[0] == "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash amd_iommu=on iommu=pt'"
    assert grub_edit('quiet')[0] == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"'
    assert grub_edit('')[0] == 'GRUB_CMDLINE_LINUX_DEFAULT="amd_iommu=on iommu=pt"'
    assert grub_edit('""')[0] == 'GRUB_CMDLINE_LINUX_DEFAULT="amd_iommu=on iommu=pt"'


def test_grub_text_after_the_closing_quote_is_kept_exactly():
    line, value = grub_edit('"quiet"', tail='; GRUB_TIMEOUT_STYLE=menu\n')
    assert line == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"; GRUB_TIMEOUT_STYLE=menu'
    line, value = grub_edit('"quiet"', tail='   # keep me "quoted" too\n')
    assert line == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"   # keep me "quoted" too'
    assert value == 'quiet amd_iommu=on iommu=pt'


def test_grub_replaces_and_removes_in_place_keeping_the_rest():
    line, _value = grub_edit('"amd_iommu=off  quiet   amd_iommu_intr=legacy splash amd-iommu=off"',
                             remove=['amd_iommu_intr'])
    assert line == 'GRUB_CMDLINE_LINUX_DEFAULT="amd_iommu=on  quiet splash iommu=pt"'


def test_grub_value_over_several_lines_and_expansions():
    text = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet\n  splash $EXTRA"\n'
    out = plan.edit_grub_default(text, ARGS)
    assert out == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet\n  splash $EXTRA amd_iommu=on iommu=pt"\n'
    assert plan.grub_value(out) == 'quiet splash $EXTRA amd_iommu=on iommu=pt'


def test_grub_cmdline_linux_is_read_with_the_default_line():
    text = 'GRUB_CMDLINE_LINUX="rd.lvm.lv=vg/root iommu=pt amd_iommu=off"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
    out = plan.edit_grub_default(text, ARGS)
    assert out == ('GRUB_CMDLINE_LINUX="rd.lvm.lv=vg/root iommu=pt amd_iommu=on"\n'
                   'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    assert plan.grub_value(out) == 'rd.lvm.lv=vg/root iommu=pt amd_iommu=on quiet'
    assert plan.edit_grub_default(out, ARGS) == out


def test_grub_bad_quoting_is_refused_with_file_and_line():
    for text in ('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet\n', "GRUB_CMDLINE_LINUX_DEFAULT='quiet\n"):
        with pytest.raises(plan.PlanError, match=r'/etc/default/grub line \d+ .*fix its quoting'):
            plan.edit_grub_default(text, ARGS)


def test_grub_d_file_that_wins_is_edited_and_named():
    main = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n'
    cloud = '# Set the default commandline\nGRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n'
    sources = [('/etc/default/grub', main), ('/etc/default/grub.d/50-cloudimg-settings.cfg', cloud)]
    result = plan.edit_grub_files(sources, ARGS)
    assert result['before'] == 'console=tty1 console=ttyS0'
    assert result['after'] == 'console=tty1 console=ttyS0 amd_iommu=on iommu=pt'
    assert list(result['texts']) == ['/etc/default/grub.d/50-cloudimg-settings.cfg']
    assert result['texts']['/etc/default/grub.d/50-cloudimg-settings.cfg'] == cloud.replace(
        'ttyS0"', 'ttyS0 amd_iommu=on iommu=pt"')
    assert '50-cloudimg-settings.cfg' in result['notes'][0] and 'wins' in result['notes'][0]
    # a drop-in that extends the main value: the main file's conflicting argument is fixed there
    extend = [('/etc/default/grub', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=off"\n'),
              ('/etc/default/grub.d/90-local.cfg', 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT mitigations=off"\n')]
    result = plan.edit_grub_files(extend, ARGS)
    assert result['texts'] == {
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on"\n',
        '/etc/default/grub.d/90-local.cfg':
            'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT mitigations=off iommu=pt"\n'}
    assert result['after'] == 'quiet amd_iommu=on mitigations=off iommu=pt'


def test_grub_sources_and_next_boot_read_the_drop_ins(tmp_path):
    root = write_host_tree(tmp_path, cpuinfo_name='zen2_epyc_7702.txt', files={
        '/etc/default/grub': 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"\n',
        '/etc/default/grub.d/50-cloudimg-settings.cfg': 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"\n',
        '/etc/default/grub.d/README': 'GRUB_CMDLINE_LINUX_DEFAULT="ignored"\n'})
    reader = HostFiles(root=root)
    sources = plan.grub_sources(reader.read, reader.listdir)
    assert [p for p, _t in sources] == ['/etc/default/grub', '/etc/default/grub.d/50-cloudimg-settings.cfg']
    assert plan.grub_next_boot(reader.read, reader.listdir) == 'console=ttyS0'


# --- boot target ---

def test_cmdline_target_rule():
    def exists_of(*paths):
        return lambda p: p in paths
    pve = ('/etc/kernel/proxmox-boot-uuids', '/etc/default/grub')
    assert plan.cmdline_target(exists_of(*pve), proxmox_modes={'grub'}) == 'grub'
    assert plan.cmdline_target(exists_of(*pve), proxmox_modes={'uefi'}) == 'kernel_cmdline'
    assert plan.cmdline_target(exists_of(*(pve + ('/sys/firmware/efi',)))) == 'grub'
    assert plan.cmdline_target(exists_of('/etc/kernel/proxmox-boot-uuids', '/sys/firmware/efi')) == 'kernel_cmdline'
    # a systemd-boot loader.conf next to /etc/default/grub counts only on a UEFI boot
    both = ('/boot/efi/loader/loader.conf', '/etc/default/grub')
    assert plan.cmdline_target(exists_of(*both)) == 'grub'
    assert plan.cmdline_target(exists_of(*(both + ('/sys/firmware/efi',)))) == 'kernel_cmdline'
    # Fedora/RHEL: BLS entries and grubby
    fedora = ('/etc/default/grub', '/boot/loader/entries')
    assert plan.cmdline_target(exists_of(*fedora), has_grubby=True) == 'grubby'
    assert plan.cmdline_target(exists_of(*fedora)) == 'grub'
    assert 'proxmox-boot-tool status' in plan.TARGET_RULE
    status = ('Re-executing \'/usr/sbin/proxmox-boot-tool\' in new private mount namespace..\n'
              'System currently booted with uefi\n'
              '4A5B-1C2D is configured with: uefi (versions: 6.8.12-4-pve)\n'
              '4A5B-1C2E is configured with: grub (versions: 6.8.12-4-pve)\n')
    assert plan.proxmox_boot_modes(status) == {'uefi', 'grub'}
    assert plan.proxmox_boot_modes('') == set()


def test_seed_kernel_cmdline_drops_what_the_boot_loader_adds():
    seeded = plan.seed_kernel_cmdline('BOOT_IMAGE=/vmlinuz-6.1 initrd=\\initrd.img root=UUID=ab rw quiet\n')
    assert seeded == 'root=UUID=ab rw quiet'
    with pytest.raises(plan.PlanError, match='/etc/kernel/cmdline'):
        plan.seed_kernel_cmdline('BOOT_IMAGE=/vmlinuz initrd=/initrd.img\n')


# --- reboot decision ---

def test_cmdline_decision_reboots_only_when_the_next_boot_carries_the_args():
    running = 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet'
    go = plan.cmdline_decision(running, 'root=/dev/sda1 quiet amd_iommu=on iommu=pt', ARGS)
    assert go['pending'] is True and go['missing'] == ARGS
    assert go['reason'] == 'the kernel command line takes effect at the next boot: amd_iommu=on iommu=pt'
    unmanaged = plan.cmdline_decision(running, None, ARGS, target='none')
    assert unmanaged['pending'] is False and 'no reboot' in unmanaged['reason']
    assert 'avic_host_boot_config' in unmanaged['reason']
    overridden = plan.cmdline_decision(running, 'console=ttyS0 amd_iommu=on', ARGS, target='grub')
    assert overridden['pending'] is False and 'iommu=pt' in overridden['reason']
    done = plan.cmdline_decision(running + ' amd_iommu=on iommu=pt', 'x', ARGS)
    assert done == {'pending': False, 'missing': [], 'reason': None}
    removal = plan.cmdline_decision('quiet amd_iommu_intr=legacy', 'quiet', [], ['amd_iommu_intr'])
    assert removal['pending'] is True and removal['missing'] == ['amd_iommu_intr=legacy']


def test_activation_reboots_for_options_only_when_the_next_load_takes_them(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    opts = plan.wanted_options()
    cmd = 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 amd_iommu=on iommu=pt'
    off = facts_for(tmp_path / 'a', 'zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '0'},
                    files={'/proc/cmdline': cmd + '\n'})
    act = plan.activation(off, opts, ARGS, next_boot=cmd)
    assert act['reload_needed'] and act['reboot'] and act['options_apply_at_boot']
    assert plan.activation(off, opts, ARGS, next_boot=cmd, reloaded=True)['reboot'] is False
    blocked = plan.activation(off, opts, ARGS, next_boot=cmd, winning_conflicts=[
        {'path': '/etc/modprobe.d/zz.conf', 'wins': True, 'message': '/etc/modprobe.d/zz.conf sets kvm_amd avic=0'}])
    assert blocked['reboot'] is False and 'no reboot' in blocked['reasons'][-1]
    forced = facts_for(tmp_path / 'b', 'zen2_epyc_7702.txt', params={'avic': 'N', 'npt': 'Y', 'nested': '0'},
                       files={'/proc/cmdline': cmd + ' kvm_amd.avic=0\n'})
    result = plan.final_state(forced, opts, ARGS, next_boot=cmd + ' kvm_amd.avic=0')
    assert result['reboot_needed'] is False
    assert any('kvm_amd.avic=0' in r and 'overrides the managed avic=1' in r for r in result['reasons'])


def test_cmdline_option_conflicts_compare_values_not_spelling():
    opts = plan.wanted_options()
    assert plan.cmdline_option_conflicts(opts, 'kvm_amd.avic=Y kvm-amd.npt=1') == []
    found = plan.cmdline_option_conflicts(opts, 'quiet', 'kvm-amd.nested=1')
    assert len(found) == 1 and "next boot's kernel command line sets kvm_amd.nested=1" in found[0]


def test_next_boot_line_prefers_the_module_result():
    facts = {'boot_cmdline': {'target': 'grub', 'value': 'quiet'}}
    assert plan.next_boot_line(facts) == 'quiet'
    assert plan.next_boot_line(facts, {'target': 'grub', 'next_boot': 'quiet iommu=pt'}) == 'quiet iommu=pt'
    assert plan.next_boot_line(facts, {'skipped': True, 'changed': False}) == 'quiet'
    assert plan.next_boot_line({'boot_cmdline': {'target': 'none', 'value': None}}) is None
    assert plan.next_boot_line(facts, {'target': 'none', 'next_boot': None}) is None


# --- guests right before a reload or reboot ---

def test_reboot_guard():
    qemu = [{'pid': 41, 'name': 'win11', 'kvm': True}, {'pid': 42, 'name': None, 'kvm': True}]
    assert plan.reboot_guard([], []) == {'action': 'proceed', 'shutdown': [], 'guests': [], 'reason': None}
    skip = plan.reboot_guard(qemu, ['win11'])
    assert skip['action'] == 'skip' and skip['guests'] == ['pid 42 (no name)', 'win11']
    assert 'unnamed' not in skip['reason']
    stray = plan.reboot_guard(qemu, ['win11'], shutdown=True)
    assert stray['action'] == 'skip' and stray['shutdown'] == [] and 'pid 42 (no name)' in stray['reason']
    go = plan.reboot_guard(qemu[:1], ['win11', 'db'], shutdown=True)
    assert go == {'action': 'shutdown', 'shutdown': ['db', 'win11'], 'guests': ['db', 'win11'], 'reason': None}
    check = plan.reboot_guard(qemu[:1], ['win11'], shutdown=True, check_mode=True)
    assert check['action'] == 'report' and 'would be shut down' in check['reason']
    assert plan.reboot_guard([], [], check_mode=True)['action'] == 'report'
    assert plan.reboot_guard(qemu, None, container='podman')['action'] == 'report'
    nolibvirt = plan.reboot_guard(qemu[:1], None, shutdown=True)
    assert nolibvirt['action'] == 'shutdown' and nolibvirt['shutdown'] == ['win11']


def test_cmdline_needed_filter_runs_the_module_where_the_facts_cannot_tell():
    from ansible_collections.vfio.avic.plugins.filter import avic_host as host_filters
    done = {'cpu': {}, 'cmdline': 'root=/dev/sda1 amd_iommu=on iommu=pt',
            'boot_cmdline': {'target': 'grub', 'value': 'quiet amd_iommu=on iommu=pt'}}
    assert host_filters.avic_host_cmdline_needed(done, ARGS) is False
    # configured but not running, in facts without sources (an older avic_facts read
    # /etc/default/grub alone): a /etc/default/grub.d file may override that line
    waiting = dict(done, cmdline='root=/dev/sda1')
    assert host_filters.avic_host_cmdline_needed(waiting, ARGS) is True
    # facts that read the grub.d files too answer it: nothing to edit, the reboot is pending
    read = dict(waiting, boot_cmdline=dict(done['boot_cmdline'], sources=['/etc/default/grub']))
    assert host_filters.avic_host_cmdline_needed(read, ARGS) is False
    proxmox = dict(done, boot_loader={'kind': 'proxmox-boot-tool'},
                   boot_cmdline={'target': 'kernel_cmdline', 'value': 'root=ZFS=x amd_iommu=on iommu=pt'})
    assert host_filters.avic_host_cmdline_needed(proxmox, ARGS) is True
    assert host_filters.avic_host_cmdline_needed(dict(done, boot_cmdline={'target': 'none', 'value': None}), ARGS) is False


def test_state_filter_takes_the_module_result_as_the_next_boot(tmp_path):
    from ansible_collections.vfio.avic.plugins.filter import avic_host as host_filters
    facts = facts_for(tmp_path, 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    opts = {'avic': '1', 'npt': '1', 'nested': '0'}
    edited = {'changed': True, 'target': 'grub', 'next_boot': 'quiet amd_iommu=on iommu=pt', 'notes': []}
    state = host_filters.avic_host_state(facts, opts, ARGS, next_boot=edited)
    assert state['state'] == 'pending_reboot' and state['reboot_needed'] is True
    skipped = {'changed': False, 'target': 'none', 'next_boot': None}
    none = host_filters.avic_host_state(facts, opts, ARGS, next_boot=skipped)
    assert none['state'] == 'active' and none['reboot_needed'] is False
    assert 'boot config none' in none['reasons'][0]


# --- the filter that spares the avic_cmdline round trip, against the module itself ---

GRUB_MAIN = 'GRUB_CMDLINE_LINUX="root=/dev/vda1 ro"\nGRUB_CMDLINE_LINUX_DEFAULT="%s"\n'
CLOUDIMG = '/etc/default/grub.d/50-cloudimg-settings.cfg'
SKIP_CASES = [
    # (name, files, remove, whether avic_cmdline has anything to do)
    ('grub, edited, not booted yet', {'/etc/default/grub': GRUB_MAIN % 'quiet amd_iommu=on iommu=pt'}, [], False),
    ('grub.d overrides the edited line', {'/etc/default/grub': GRUB_MAIN % 'quiet amd_iommu=on iommu=pt',
                                          CLOUDIMG: 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"\n'}, [], True),
    ('grub.d carries them', {'/etc/default/grub': GRUB_MAIN % 'quiet',
                             CLOUDIMG: 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0 amd_iommu=on iommu=pt"\n'},
     [], False),
    ('split over both variables', {'/etc/default/grub': 'GRUB_CMDLINE_LINUX="amd_iommu=on"\n'
                                                        'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'}, [], False),
    ('an expansion next to them', {'/etc/default/grub': GRUB_MAIN % '$EXTRA amd_iommu=on iommu=pt'}, [], False),
    ('twice', {'/etc/default/grub': GRUB_MAIN % 'amd_iommu=on iommu=pt amd_iommu=on'}, [], True),
    ('another value', {'/etc/default/grub': GRUB_MAIN % 'amd_iommu=on iommu=nopt'}, [], True),
    ('a key to remove', {'/etc/default/grub': GRUB_MAIN % 'amd_iommu=on iommu=pt amd_iommu_intr=legacy'},
     ['amd_iommu_intr'], True),
    ('unparseable', {'/etc/default/grub': GRUB_MAIN % 'amd_iommu=on iommu=pt\\'}, [], True),
    ('kernel_cmdline carries them', {'/boot/loader/loader.conf': '', '/etc/kernel/cmdline':
                                     'root=/dev/nvme0n1p2 rw amd_iommu=on  iommu=pt\n'}, [], False),
    ('kernel_cmdline missing, seeded', {'/boot/loader/loader.conf': ''}, [], True),
]


@pytest.mark.parametrize('name,files,remove,needed', SKIP_CASES, ids=[c[0] for c in SKIP_CASES])
def test_cmdline_needed_agrees_with_the_module_in_check_mode(tmp_path, name, files, remove, needed):
    from ansible_collections.vfio.avic.plugins.filter import avic_host as host_filters
    from conftest import run_module_direct
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', files=files)
    facts = gather_facts.gather(root=root)
    result = run_module_direct('avic_cmdline', dict(root=root, args=ARGS, remove=remove), check_mode=True)
    if name == 'unparseable':
        assert result.get('failed') and 'fix its quoting' in result['msg']
    else:
        assert result['changed'] is needed, result
    assert host_filters.avic_host_cmdline_needed(facts, ARGS, remove) is needed
    # the running line lacks them in every case: with the new facts that alone asks for nothing
    assert 'amd_iommu=on' not in facts['cmdline']


def test_cmdline_needed_on_proxmox_only_without_the_esp_modes(tmp_path):
    from ansible_collections.vfio.avic.plugins.filter import avic_host as host_filters
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', files={
        '/etc/kernel/proxmox-boot-uuids': '6E4D-1A2B\n', '/usr/sbin/proxmox-boot-tool': '',
        '/sys/firmware/efi/.keep': '', '/etc/default/grub': GRUB_MAIN % 'quiet',
        '/etc/kernel/cmdline': 'root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n'})
    facts = gather_facts.gather(root=root)
    assert facts['boot_cmdline']['esp_modes'] is None
    assert host_filters.avic_host_cmdline_needed(facts, ARGS) is True

    def status(mode):
        return lambda argv: (0, '6E4D-1A2B is configured with: %s (versions: 6.8.12-4-pve)\n' % mode, '')
    uefi = dict(facts, boot_cmdline=gather_facts._boot_cmdline(HostFiles(root=root), status('uefi')))
    assert host_filters.avic_host_cmdline_needed(uefi, ARGS) is False
    # the ESPs boot GRUB, whose line lacks them
    grub = dict(facts, boot_cmdline=gather_facts._boot_cmdline(HostFiles(root=root), status('grub')))
    assert grub['boot_cmdline']['target'] == 'grub'
    assert host_filters.avic_host_cmdline_needed(grub, ARGS) is True
    assert host_filters.avic_host_cmdline_needed(uefi, ARGS, [], 'grub') is True
