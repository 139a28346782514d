"""Testinfra checks of the guest role against the real libvirtd (run by verify.yml)."""

import json
import xml.etree.ElementTree as ET

QEMU_NS = '{http://libvirt.org/schemas/domain/qemu/1.0}'
BACKUPS = '/var/lib/vfio-avic/backups'


def dumpxml(host, name):
    return ET.fromstring(host.check_output('virsh dumpxml --inactive %s' % name))


def before(host, name):
    return ET.fromstring(host.file('/var/tmp/lab/%s.before.xml' % name).content_string)


def canon(element):
    return ET.canonicalize(ET.tostring(element), strip_text=True)


def report(host):
    return dict((g['name'], g) for g in json.loads(host.file('/var/tmp/lab/report.json').content_string))


def test_unrelated_xml_is_intact(host):
    for name in ('win10', 'linux-defaults', 'tcg-running'):
        now, old = dumpxml(host, name), before(host, name)
        for path in ('devices', 'metadata', 'os', 'cputune', QEMU_NS + 'commandline', 'uuid', 'memory'):
            if old.find(path) is not None:
                assert canon(now.find(path)) == canon(old.find(path)), (name, path)


def test_backups_hold_the_previous_definition(host):
    files = host.check_output('ls %s' % BACKUPS).split()
    for name in ('win10', 'linux-defaults', 'tcg-running'):
        mine = [f for f in files if f.startswith(name + '-') and f.endswith('.xml')]
        assert len(mine) == 1, (name, files)
        backup = host.file('%s/%s' % (BACKUPS, mine[0]))
        assert backup.mode == 0o600
        assert canon(ET.fromstring(backup.content_string)) == canon(before(host, name))
    assert not [f for f in files if f.startswith('already-correct')]
    assert not [f for f in files if f.startswith('new-linux')]


def test_already_correct_guest_is_unchanged(host):
    assert canon(dumpxml(host, 'already-correct')) == canon(before(host, 'already-correct'))
    assert report(host)['already-correct']['state'] == 'ready'
    assert report(host)['already-correct']['changed'] is False


def test_running_guest_was_not_restarted_and_needs_a_restart(host):
    assert host.check_output('virsh domstate tcg-running') == 'running'
    pid = host.file('/var/tmp/lab/tcg-running.pid').content_string.strip()
    assert host.file('/run/libvirt/qemu/tcg-running.pid').content_string.strip() == pid
    entry = report(host)['tcg-running']
    assert entry['state'] == 'restart_required' and entry['active'] is True
    live = ET.fromstring(host.check_output('virsh dumpxml tcg-running'))
    assert live.find("clock/timer[@name='pit']") is None, 'the running definition is the old one'


def test_new_guest_is_defined_with_its_odd_path_escaped(host):
    new = dumpxml(host, 'new-linux')
    assert new.find('devices/disk/source').get('file') == "/var/lib/libvirt/images/odd &<name>'\".qcow2"
    assert new.find("clock/timer[@name='pit']").get('tickpolicy') == 'discard'
    assert new.find('devices/hostdev/source/address').get('bus') == '0x0b'
    assert report(host)['new-linux']['defined'] is True


def test_tcg_guests_keep_their_cpu_model_with_a_note(host):
    """type='qemu' guests: x2apic is fixed in QEMU's default model, never host-passthrough; qemu64
    carries no svm under KVM (QEMU turns it off on named models), so none is added."""
    for name in ('tcg-running', 'new-linux'):
        cpu = dumpxml(host, name).find('cpu')
        assert cpu.get('mode') == 'custom' and cpu.findtext('model') == 'qemu64', name
        policies = dict((f.get('name'), f.get('policy')) for f in cpu.findall('feature'))
        assert policies.get('x2apic') == 'disable' and 'svm' not in policies, (name, policies)
        notes = [r for r in report(host)[name]['reasons'] if 'QEMU TCG cannot run the host CPU model' in r]
        assert notes, (name, report(host)[name]['reasons'])
    old = before(host, 'tcg-running').find('cpu')
    assert old is None or (old.get('mode', 'custom') == 'custom' and old.findtext('model') in (None, 'qemu64'))
    for name in ('win10', 'linux-defaults', 'already-correct'):
        assert dumpxml(host, name).find('cpu').get('mode') == before(host, name).find('cpu').get('mode'), name
