# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host role's filters against the facts and the avic_cmdline module itself."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles
from ansible_collections.vfio.avic.plugins.module_utils import gather as gather_facts
from ansible_collections.vfio.avic.plugins.module_utils.boot import target as boot_target
from ansible_collections.vfio.avic.plugins.module_utils.plan import cmdline as cmdline_plan

from conftest import write_host_tree


ARGS = ['amd_iommu=on', 'iommu=pt']


def test_cmdline_edit_needed_runs_the_module_where_the_facts_cannot_tell():
    from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
    done = {'cpu': {}, 'cmdline': 'root=/dev/sda1 amd_iommu=on iommu=pt',
            'boot_cmdline': {'target': 'grub', 'value': 'quiet amd_iommu=on iommu=pt'}}
    assert cmdline_plan.edit_needed(done, ARGS) is False
    # configured but not running: the facts read the grub.d files too, so nothing is to edit and
    # the reboot is pending
    waiting = dict(done, cmdline='root=/dev/sda1')
    read = dict(waiting, boot_cmdline=dict(done['boot_cmdline'], sources=['/etc/default/grub']))
    assert cmdline_plan.edit_needed(read, ARGS) is False
    proxmox = dict(done, boot_loader={'kind': 'proxmox-boot-tool'},
                   boot_cmdline={'target': 'kernel_cmdline', 'value': 'root=ZFS=x amd_iommu=on iommu=pt'})
    assert cmdline_plan.edit_needed(proxmox, ARGS) is True
    assert cmdline_plan.edit_needed(dict(done, boot_cmdline={'target': 'none', 'value': None}), ARGS) is False


def test_state_filter_takes_the_module_result_as_the_next_boot(tmp_path):
    from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
    facts = facts_for(tmp_path, 'zen4_epyc_9654.txt', params={'avic': 'Y', 'npt': 'Y', 'nested': '0'})
    opts = {'avic': '1', 'npt': '1', 'nested': '0'}
    edited = {'changed': True, 'target': 'grub', 'next_boot': 'quiet amd_iommu=on iommu=pt', 'notes': []}
    state = role_filters.host_state(facts, opts, ARGS, next_boot=edited)
    assert state['state'] == 'pending_reboot' and state['reboot_needed'] is True
    skipped = {'changed': False, 'target': 'none', 'next_boot': None}
    none = role_filters.host_state(facts, opts, ARGS, next_boot=skipped)
    assert none['state'] == 'active' and none['reboot_needed'] is False
    assert 'boot config none' in none['reasons'][0]
    # a skipped avic_cmdline task: the facts' configured line decides, as without a result
    assert role_filters.host_state(facts, opts, ARGS, next_boot={'skipped': True, 'changed': False}) == \
        role_filters.host_state(facts, opts, ARGS)


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
def test_cmdline_edit_needed_agrees_with_the_module_in_check_mode(tmp_path, name, files, remove, needed):
    from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
    from conftest import run_module_direct
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', files=files)
    facts = gather_facts.gather(root=root)
    result = run_module_direct('avic_cmdline', dict(root=root, args=ARGS, remove=remove), check_mode=True)
    if name == 'unparseable':
        assert result.get('failed') and 'fix its quoting' in result['msg']
    else:
        assert result['changed'] is needed, result
    assert cmdline_plan.edit_needed(facts, ARGS, remove) is needed
    # the running line lacks them in every case: with the new facts that alone asks for nothing
    assert 'amd_iommu=on' not in facts['cmdline']


def test_cmdline_edit_needed_on_proxmox_only_without_the_esp_modes(tmp_path):
    from ansible_collections.vfio.avic.plugins.filter import __roles as role_filters
    root = write_host_tree(tmp_path, cpuinfo_name='zen4_epyc_9654.txt', files={
        '/etc/kernel/proxmox-boot-uuids': '6E4D-1A2B\n', '/usr/sbin/proxmox-boot-tool': '',
        '/sys/firmware/efi/.keep': '', '/etc/default/grub': GRUB_MAIN % 'quiet',
        '/etc/kernel/cmdline': 'root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n'})
    facts = gather_facts.gather(root=root)
    assert facts['boot_cmdline']['esp_modes'] is None
    assert cmdline_plan.edit_needed(facts, ARGS) is True

    def status(mode):
        return lambda argv: (0, '6E4D-1A2B is configured with: %s (versions: 6.8.12-4-pve)\n' % mode, '')
    uefi = dict(facts, boot_cmdline=boot_target.next_boot_cmdline(HostFiles(root=root), status('uefi')))
    assert cmdline_plan.edit_needed(uefi, ARGS) is False
    # the ESPs boot GRUB, whose line lacks them
    grub = dict(facts, boot_cmdline=boot_target.next_boot_cmdline(HostFiles(root=root), status('grub')))
    assert grub['boot_cmdline']['target'] == 'grub'
    assert cmdline_plan.edit_needed(grub, ARGS) is True
    assert cmdline_plan.edit_needed(uefi, ARGS, [], 'grub') is True


def facts_for(tmp_path, cpuinfo_name, kernel='6.1.0-26-amd64', params=None, files=None):
    return gather_facts.gather(root=write_host_tree(tmp_path, cpuinfo_name=cpuinfo_name, kernel=kernel,
                                                    params=params, files=files))
