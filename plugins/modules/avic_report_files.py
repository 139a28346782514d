#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: avic_report_files
short_description: Write the fleet AVIC report as JSON and Markdown files on the controller
version_added: 0.2.0
description:
  - Writes O(dir)/O(name)C(.json) (layout C(schema) 2, C(totals), one record per host in
    C(hosts)) and O(dir)/O(name)C(.md) (the host table, then each host's guests) from the result
    of the P(vfio.avic.avic_fleet_report#filter) filter.
  - An action plugin that runs on the controller in Ansible's own process; nothing is sent to
    a host. O(dir) is made (mode C(0755)) when missing; each file is written to a temporary file
    beside it and renamed over the old one (mode C(0644)), so a reader sees a whole report.
  - The report is output, like the terminal table, so the task never reports C(changed) and it
    writes in check mode too.
  - The P(vfio.avic.report#role) role calls it as its last step.
author:
  - vfio.avic maintainers (@vfio-avic)
options:
  dir:
    description:
      - The directory on the controller; a relative path is taken from the directory
        C(ansible-playbook) runs in.
    type: path
    required: true
  name:
    description:
      - The file name without its suffix.
    type: str
    default: avic-report
  report:
    description:
      - The fleet report, as returned by P(vfio.avic.avic_fleet_report#filter).
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: The report files are written in check mode too; the hosts are not touched.
  diff_mode:
    support: none
    description: The report files are output, not a change, and show no diff.
notes:
  - Runs on the controller only; use it with C(run_once) in a play over many hosts.
'''

EXAMPLES = r'''
- name: Write reports/avic-report.json and .md for the play's hosts
  vfio.avic.avic_report_files:
    dir: "{{ playbook_dir }}/reports"
    report: "{{ ansible_play_hosts_all | map('extract', hostvars) | vfio.avic.avic_fleet_report }}"
  run_once: true
'''

RETURN = r'''
paths:
  description: The files written, JSON first.
  returned: success
  type: list
  elements: str
  sample: [/srv/ansible/reports/avic-report.json, /srv/ansible/reports/avic-report.md]
'''
