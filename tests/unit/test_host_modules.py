# -*- coding: utf-8 -*-
"""avic_modprobe and avic_cmdline run the way Ansible runs them, on host trees under tmp_path."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from conftest import run_ansible_module, run_module_direct

MANAGED = '/etc/modprobe.d/vfio-avic-kvm_amd.conf'


def tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel.lstrip('/')
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / 'etc' / 'modprobe.d').mkdir(parents=True, exist_ok=True)
    return tmp_path


def modprobe(root, *flags, **args):
    args['root'] = str(root)
    return run_ansible_module('vfio.avic.avic_modprobe', json.dumps(args), *flags)


def cmdline(root, *flags, **args):
    args['root'] = str(root)
    return run_ansible_module('vfio.avic.avic_cmdline', json.dumps(args), *flags)


def test_modprobe_writes_the_managed_file_once(tmp_path):
    root = tree(tmp_path, {})
    status, result = modprobe(root)
    assert 'CHANGED' in status and result['options'] == {'avic': '1', 'npt': '1', 'nested': '0'}
    text = (root / MANAGED.lstrip('/')).read_text()
    assert text.startswith('# Managed by Ansible') and text.endswith('options kvm_amd avic=1 npt=1 nested=0\n')
    assert oct((root / MANAGED.lstrip('/')).stat().st_mode & 0o777) == '0o644'
    status, result = modprobe(root)
    assert 'SUCCESS' in status and result['changed'] is False and result['backups'] == []


def test_modprobe_check_mode_and_diff_change_nothing(tmp_path):
    root = tree(tmp_path, {'/etc/modprobe.d/kvm.conf': 'options kvm_amd nested=1\n'})
    result = run_module_direct('avic_modprobe', dict(root=str(root), force_avic=True, comment_conflicts=True),
                               check_mode=True, diff=True)
    assert result['changed'] is True
    assert not (root / MANAGED.lstrip('/')).exists()
    assert (root / 'etc/modprobe.d/kvm.conf').read_text() == 'options kvm_amd nested=1\n'
    assert result['commented'] == ['/etc/modprobe.d/kvm.conf']
    assert [d['after_header'] for d in result['diff']] == [MANAGED, '/etc/modprobe.d/kvm.conf']
    assert 'force_avic=1' in result['diff'][0]['after']


def test_modprobe_reports_conflicts_and_comments_them_out_with_a_backup(tmp_path):
    root = tree(tmp_path, {'/etc/modprobe.d/kvm.conf': 'options kvm_amd nested=1 sev=1\n',
                           '/etc/modprobe.d/zz.conf': 'options kvm-amd avic=0\n'})
    _status, result = modprobe(root)
    assert sorted((c['path'], c['option'], c['wins']) for c in result['conflicts']) == [
        ('/etc/modprobe.d/kvm.conf', 'nested', False), ('/etc/modprobe.d/zz.conf', 'avic', True)]
    assert (root / 'etc/modprobe.d/zz.conf').read_text() == 'options kvm-amd avic=0\n', 'reported, not touched'
    status, result = modprobe(root, comment_conflicts=True)
    assert 'CHANGED' in status and result['conflicts'] == []
    assert (root / 'etc/modprobe.d/kvm.conf').read_text() == (
        '# options kvm_amd nested=1 sev=1  # disabled by vfio.avic.host\noptions kvm_amd sev=1\n')
    assert len(result['backups']) == 2
    assert all(open(b).read().startswith('options kvm') for b in result['backups'])


def test_modprobe_bad_input_changes_nothing(tmp_path):
    root = tree(tmp_path, {})
    status, result = modprobe(root, extra_options={'bad name': 1})
    assert 'FAILED' in status and 'extra_options' in result['msg'] and 'avic_host_' not in result['msg']
    status, result = modprobe(root, path='/etc/kvm.conf')
    assert 'FAILED' in status and '/etc/modprobe.d/' in result['msg']
    assert list((root / 'etc/modprobe.d').iterdir()) == []


GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=off"\nGRUB_CMDLINE_LINUX=""\n'


def test_cmdline_edits_grub_keeping_other_arguments(tmp_path):
    root = tree(tmp_path, {'/etc/default/grub': GRUB})
    result = run_module_direct('avic_cmdline', dict(root=str(root), args=['amd_iommu=on', 'iommu=pt']),
                               diff=True)
    assert result['changed'] and result['target'] == 'grub' and result['refresh'] == 'grub-mkconfig'
    assert result['before'] == 'quiet amd_iommu=off' and result['after'] == 'quiet amd_iommu=on iommu=pt'
    assert (root / 'etc/default/grub').read_text() == GRUB.replace('quiet amd_iommu=off',
                                                                   'quiet amd_iommu=on iommu=pt')
    assert open(result['backups'][0]).read() == GRUB
    assert 'iommu=pt' in result['diff']['after']
    status, result = cmdline(root, args=['amd_iommu=on', 'iommu=pt'])
    assert 'SUCCESS' in status and result['changed'] is False


def test_cmdline_kernel_cmdline_for_proxmox_and_check_mode(tmp_path):
    root = tree(tmp_path, {'/etc/kernel/cmdline': 'root=ZFS=rpool/ROOT/pve-1 boot=zfs\n',
                           '/etc/kernel/proxmox-boot-uuids': 'ABCD-1234\n'})
    status, result = cmdline(root, '--check', args=['amd_iommu=on', 'iommu=pt'],
                             remove=['amd_iommu_intr'])
    assert 'CHANGED' in status and result['refresh'] == 'proxmox-boot-tool'
    assert result['after'] == 'root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt'
    assert (root / 'etc/kernel/cmdline').read_text() == 'root=ZFS=rpool/ROOT/pve-1 boot=zfs\n'


def test_cmdline_without_a_boot_loader_reports_and_rejects_bad_args(tmp_path):
    root = tree(tmp_path, {})
    status, result = cmdline(root, args=['iommu=pt'])
    assert 'SUCCESS' in status and result['target'] == 'none' and 'not changed' in result['msg']
    status, result = cmdline(root, args=['quiet splash'])
    assert 'FAILED' in status and 'single kernel argument' in result['msg'] and 'args' in result['msg']
    status, result = cmdline(root, target='grub', args=['iommu=pt'])
    assert 'FAILED' in status and '/etc/default/grub does not exist' in result['msg']


def test_cmdline_seeds_a_missing_kernel_cmdline_from_proc_cmdline(tmp_path):
    root = tree(tmp_path, {'/boot/efi/loader/loader.conf': 'default @saved\n',
                           '/proc/cmdline': 'BOOT_IMAGE=/vmlinuz-6.12 initrd=\\initrd.img root=UUID=0b4c rw quiet\n'})
    result = run_module_direct('avic_cmdline', dict(root=str(root), args=['amd_iommu=on', 'iommu=pt']),
                               check_mode=True, diff=True)
    assert result['changed'] and result['target'] == 'kernel_cmdline'
    assert not (root / 'etc/kernel').exists(), 'check mode writes nothing'
    assert result['after'] == 'root=UUID=0b4c rw quiet amd_iommu=on iommu=pt' == result['next_boot']
    assert 'seeded from /proc/cmdline without BOOT_IMAGE= and initrd=' in result['diff']['before_header']
    assert 'seeded' in result['msg']
    (root / 'etc/kernel').mkdir(parents=True)
    status, result = cmdline(root, args=['amd_iommu=on', 'iommu=pt'])
    assert 'CHANGED' in status and result['backups'] == []
    assert (root / 'etc/kernel/cmdline').read_text() == 'root=UUID=0b4c rw quiet amd_iommu=on iommu=pt\n'
    status, result = cmdline(root, args=['amd_iommu=on', 'iommu=pt'])
    assert 'SUCCESS' in status and result['changed'] is False


def test_cmdline_never_writes_a_line_without_the_users_arguments(tmp_path):
    root = tree(tmp_path, {'/boot/loader/loader.conf': 'default @saved\n',
                           '/proc/cmdline': 'BOOT_IMAGE=/vmlinuz initrd=/initrd.img\n'})
    (root / 'etc/kernel').mkdir(parents=True)
    status, result = cmdline(root, args=['iommu=pt'])
    assert 'FAILED' in status and 'root=' in result['msg']
    assert list((root / 'etc/kernel').iterdir()) == []


def test_cmdline_edits_the_grub_d_file_that_wins_and_keeps_quoting(tmp_path):
    main = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet dyndbg=\\"file foo.c +p\\""  # mine\nGRUB_TIMEOUT=5\n'
    cloud = 'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n'
    root = tree(tmp_path, {'/etc/default/grub': main,
                           '/etc/default/grub.d/50-cloudimg-settings.cfg': cloud})
    result = run_module_direct('avic_cmdline', dict(root=str(root), args=['amd_iommu=on', 'iommu=pt']),
                               diff=True)
    assert result['changed'] and result['path'] == '/etc/default/grub.d/50-cloudimg-settings.cfg'
    assert result['paths'] == ['/etc/default/grub.d/50-cloudimg-settings.cfg']
    assert result['next_boot'] == 'console=tty1 console=ttyS0 amd_iommu=on iommu=pt'
    assert '50-cloudimg-settings.cfg' in result['msg'] and 'wins' in result['msg']
    assert (root / 'etc/default/grub').read_text() == main, 'the file that loses is left alone'
    assert (root / 'etc/default/grub.d/50-cloudimg-settings.cfg').read_text() == \
        'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0 amd_iommu=on iommu=pt"\n'
    assert open(result['backups'][0]).read() == cloud
    # without the drop-in: the escaped quotes and the comment stay as written
    (root / 'etc/default/grub.d/50-cloudimg-settings.cfg').unlink()
    status, result = cmdline(root, args=['amd_iommu=on', 'iommu=pt'])
    assert 'CHANGED' in status
    assert (root / 'etc/default/grub').read_text() == main.replace('+p\\""', '+p\\" amd_iommu=on iommu=pt"')


def test_cmdline_refuses_unparseable_grub_quoting_and_changes_nothing(tmp_path):
    bad = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet\nGRUB_TIMEOUT=5\n'
    root = tree(tmp_path, {'/etc/default/grub': bad})
    status, result = cmdline(root, args=['iommu=pt'])
    assert 'FAILED' in status and '/etc/default/grub line 1' in result['msg'] and 'quoting' in result['msg']
    assert (root / 'etc/default/grub').read_text() == bad
    assert sorted(p.name for p in (root / 'etc/default').iterdir()) == ['grub']


# --- refusals that protect the boot and the managed state (nothing is changed) ---------------

def direct(module, root, **args):
    """(status word, result) of the module run as a script: the same code as under Ansible, faster."""
    args['root'] = str(root)
    result = run_module_direct(module, args)
    return ('FAILED' if result.get('failed') else 'CHANGED' if result.get('changed') else 'SUCCESS'), result


KERNEL_CMDLINE_TEXT = 'root=UUID=0b4c1b2e-1111 rootflags=subvol=@ rw quiet amd_iommu_intr=legacy\n'


@pytest.mark.parametrize('remove, refused', [
    (['root=UUID=0b4c1b2e-1111'], 'root=UUID=0b4c1b2e-1111'),
    (['rootflags=subvol=@'], 'rootflags=subvol=@'),
    (['rw'], 'rw'), (['ro'], 'ro'), (['init'], 'init'), (['resume'], 'resume'),
    (['rd.luks.uuid'], 'rd.luks.uuid'), (['cryptdevice'], 'cryptdevice'),
    (['quiet'], 'quiet'),                                   # the user's, not an owned family
    (['amd_iommu_intr', 'root'], 'root'),                   # one bad item refuses the whole list
])
def test_cmdline_refuses_to_remove_what_the_collection_does_not_own(tmp_path, remove, refused):
    root = tree(tmp_path, {'/etc/kernel/cmdline': KERNEL_CMDLINE_TEXT})
    status, result = direct('avic_cmdline', root, args=['iommu=pt'], remove=remove, target='kernel_cmdline')
    assert 'FAILED' in status, result
    assert refused in result['msg'] and 'remove' in result['msg'] and 'nothing was changed' in result['msg']
    assert (root / 'etc/kernel/cmdline').read_text() == KERNEL_CMDLINE_TEXT
    assert sorted(p.name for p in (root / 'etc/kernel').iterdir()) == ['cmdline'], 'no backup, no temp file'


def test_cmdline_removes_an_owned_family_and_keeps_the_root_arguments(tmp_path):
    root = tree(tmp_path, {'/etc/kernel/cmdline': KERNEL_CMDLINE_TEXT + ''})
    (root / 'etc/kernel/cmdline').write_text(KERNEL_CMDLINE_TEXT.replace('quiet', 'quiet amd_iommu=on kvm-amd.avic=0'))
    status, result = direct('avic_cmdline', root, args=['iommu=pt'], target='kernel_cmdline',
                            remove=['amd_iommu_intr', 'amd_iommu', 'kvm_amd.avic'])
    assert 'CHANGED' in status, result
    assert (root / 'etc/kernel/cmdline').read_text() == 'root=UUID=0b4c1b2e-1111 rootflags=subvol=@ rw quiet iommu=pt\n'


@pytest.mark.parametrize('arg', ['root=/dev/sda1', 'rootflags=subvol=@root', 'ro', 'init=/bin/sh', 'rd.break'])
def test_cmdline_refuses_to_own_a_boot_argument(tmp_path, arg):
    root = tree(tmp_path, {'/etc/kernel/cmdline': KERNEL_CMDLINE_TEXT})
    status, result = direct('avic_cmdline', root, args=['iommu=pt', arg], target='kernel_cmdline')
    assert 'FAILED' in status and arg in result['msg'] and 'needed to boot' in result['msg']
    assert (root / 'etc/kernel/cmdline').read_text() == KERNEL_CMDLINE_TEXT


@pytest.mark.parametrize('key, option', [('avic', 'avic'), ('nested', 'nested'), ('force_avic', 'force_avic'),
                                         ('kvm-amd.npt', None), ('npt', None)])
def test_modprobe_refuses_managed_keys_in_extra_options(tmp_path, key, option):
    root = tree(tmp_path, {})
    status, result = direct('avic_modprobe', root, extra_options={key.replace('kvm-amd.', ''): '0'})
    assert 'FAILED' in status and 'is managed' in result['msg'], result
    if option:
        assert 'use %s instead' % option in result['msg']
    assert list((root / 'etc/modprobe.d').iterdir()) == []


def test_modprobe_avic_false_turns_avic_off_on_purpose(tmp_path):
    root = tree(tmp_path, {})
    status, result = direct('avic_modprobe', root, avic=False)
    assert 'CHANGED' in status and result['options']['avic'] == '0'
    assert (root / MANAGED.lstrip('/')).read_text().endswith('options kvm_amd avic=0 npt=1 nested=0\n')
    status, result = direct('avic_modprobe', root, avic=False, force_avic=True)
    assert 'FAILED' in status and 'force_avic' in result['msg'] and 'avic_host_' not in result['msg']


@pytest.mark.parametrize('path', ['/run/whatever.conf', '/run/modprobe.d/x.conf', '/lib/modprobe.d/x.conf',
                                  '/usr/lib/modprobe.d/x.conf', '/etc/modprobe.d/sub/x.conf',
                                  '/etc/modprobe.d/../x.conf', '/etc/modprobe.d/x.txt', '/etc/modprobe.d/.conf'])
def test_modprobe_writes_only_a_conf_file_in_etc_modprobe_d(tmp_path, path):
    root = tree(tmp_path, {})
    status, result = direct('avic_modprobe', root, path=path)
    assert 'FAILED' in status and path in result['msg'], result
    assert [p for p in root.rglob('*') if p.is_file()] == []


# --- unusual real files: edited correctly, every other byte kept, or refused with nothing changed --

@pytest.mark.parametrize('case, text, expected', [
    ('defined twice: the last one wins in the shell, it is the one edited',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash iommu=pt"\n'),
    ('a $VAR reference is kept as written',
     'EXTRA="mitigations=off"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet $EXTRA"\n',
     'EXTRA="mitigations=off"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet $EXTRA iommu=pt"\n'),
    ('a multi-line continuation stays on its lines',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet \\\n  splash"\nGRUB_TIMEOUT=5\n',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet \\\n  splash iommu=pt"\nGRUB_TIMEOUT=5\n'),
    ('commented-out duplicates are left alone',
     '#GRUB_CMDLINE_LINUX_DEFAULT="old"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n# GRUB_CMDLINE_LINUX_DEFAULT="x"\n',
     '#GRUB_CMDLINE_LINUX_DEFAULT="old"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n# GRUB_CMDLINE_LINUX_DEFAULT="x"\n'),
    ('no trailing newline: none is added',
     'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"',
     'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"'),
    ('the value extends itself',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT splash"\n',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT splash iommu=pt"\n'),
    ('CRLF line ends are refused: the shell would read the \\r into the values',
     'GRUB_DEFAULT=0\r\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\r\nGRUB_TIMEOUT=5\r\n', None),
])
def test_unusual_grub_files_are_edited_exactly_or_refused(tmp_path, case, text, expected):
    root = tree(tmp_path, {'/etc/default/grub': text})
    status, result = direct('avic_cmdline', root, args=['iommu=pt'], target='grub')
    now = (root / 'etc/default/grub').read_bytes().decode()
    if expected is None:
        assert 'FAILED' in status and 'CRLF' in result['msg'] and 'nothing was changed' in result['msg'], case
        assert now == text, case
    else:
        assert 'CHANGED' in status, (case, result)
        assert now == expected, case
        status, result = direct('avic_cmdline', root, args=['iommu=pt'], target='grub')
        assert 'SUCCESS' in status and result['changed'] is False, case
    assert [p.name for p in (root / 'etc/default').iterdir() if p.name.startswith('.vfio-avic')] == []


@pytest.mark.parametrize('case, files, conflicts, kept', [
    ('options of kvm_amd split over two files',
     {'a.conf': 'options kvm_amd avic=1\n', 'b.conf': 'options kvm_amd nested=1\n'},
     [('/etc/modprobe.d/b.conf', 'nested')], {'a.conf': 'options kvm_amd avic=1\n'}),
    ('an install line replaces the load: reported, never commented out',
     {'k.conf': 'install kvm_amd /bin/false\n'},
     [('/etc/modprobe.d/k.conf', None)], {'k.conf': 'install kvm_amd /bin/false\n'}),
    ('softdep and blacklist lines',
     {'s.conf': 'softdep kvm_amd pre: ccp\nblacklist kvm_amd\n'},
     [('/etc/modprobe.d/s.conf', None)], {'s.conf': 'softdep kvm_amd pre: ccp\nblacklist kvm_amd\n'}),
    ('a continued options line is commented out whole, its other options kept',
     {'c.conf': 'options kvm_amd sev=1 \\\n   avic=0\noptions kvm ignore_msrs=1\n'},
     [('/etc/modprobe.d/c.conf', 'avic')],
     {'c.conf': '# options kvm_amd sev=1  # disabled by vfio.avic.host\n'
                '#    avic=0  # disabled by vfio.avic.host\noptions kvm_amd sev=1\noptions kvm ignore_msrs=1\n'}),
])
def test_unusual_modprobe_files(tmp_path, case, files, conflicts, kept):
    root = tree(tmp_path, dict(('/etc/modprobe.d/' + k, v) for k, v in files.items()))
    _status, result = direct('avic_modprobe', root)
    found = sorted((c['path'], c['option']) for c in result['conflicts'])
    assert found == sorted(conflicts), (case, result['conflicts'])
    status, result = direct('avic_modprobe', root, comment_conflicts=True)
    assert 'FAILED' not in status, (case, result)
    for name, text in kept.items():
        assert (root / 'etc/modprobe.d' / name).read_text() == text, case
    assert [c for c in result['conflicts'] if c['option']] == [], case


def test_a_backup_never_replaces_an_older_one_made_in_the_same_second(tmp_path):
    """Two backups of one file within a second by the same process: both are kept, both whole."""
    import os  # pylint: disable=import-outside-toplevel
    from ansible_collections.vfio.avic.plugins.module_utils.hostfs import HostFiles  # pylint: disable=import-outside-toplevel
    path = tmp_path / 'grub'
    path.write_text('first\n')
    one = HostFiles.backup(str(path))
    path.write_text('second\n')
    two = HostFiles.backup(str(path))
    assert one != two and os.path.basename(two).startswith('grub.')
    assert open(one).read() == 'first\n' and open(two).read() == 'second\n'
