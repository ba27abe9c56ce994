#!/usr/bin/python
# -*- coding: utf-8 -*-
# A thin wrapper over `swanmgr status -o json` (docs/status-json.md): the
# IPSecMon view of a charon, for asserts and facts. It changes nothing.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: swanmgr_status
short_description: Read swanmgr's status of a charon (SAs by policy and rule)
description:
  - Runs C(swanmgr status -o json) on the managed host and returns its document - the assigned policy,
    one row per CHILD_SA and per filter without one, IKE_SAs and statistics (docs/status-json.md in the
    swanmgr repository). It changes nothing, in or out of check mode.
  - Also returns, per rule of the assigned policy, how many of its SAs are installed, and sets the fact
    C(swanmgr_status) when I(facts=true).
version_added: "0.1.0"
author:
  - swanmgr developers
options:
  socket:
    description: charon's VICI socket on the managed host.
    type: str
    default: /var/run/charon.vici
  state_dir:
    description: Where swanmgr records what it loaded (to name SAs by rule).
    type: path
    default: /var/lib/swanmgr
  rule:
    description: Only the rows of this rule (C(--rule)).
    type: str
  timeout:
    description: Seconds to wait for charon's answers.
    type: int
    default: 30
  facts:
    description: Also set the host fact C(swanmgr_status) to the document.
    type: bool
    default: false
  binary:
    description: Path of the swanmgr binary; by default C(swanmgr) on PATH, in /usr/local/sbin or /usr/sbin.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: swanmgr.ipsec.swanmgr_policy
'''

EXAMPLES = r'''
- name: Read Alice's SAs
  swanmgr.ipsec.swanmgr_status:
  register: st

- name: Every filter of the policy has its SA
  ansible.builtin.assert:
    that: st.rules['Abczz with Bob'].installed == st.rules['Abczz with Bob'].filters
'''

RETURN = r'''
status:
  description: The document of C(swanmgr status -o json) (docs/status-json.md).
  returned: always
  type: dict
rules:
  description:
    - Per rule of the assigned policy, C(filters) (rows of the rule) and C(installed) (rows whose CHILD_SA
      is INSTALLED).
  returned: always
  type: dict
  sample: {"Abczz with Bob": {"filters": 3, "installed": 3}}
reachable:
  description: Whether charon answered.
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swanmgr.ipsec.plugins.module_utils.swanmgr import run_json


def main():
    module = AnsibleModule(argument_spec=dict(
        socket=dict(type='str', default='/var/run/charon.vici'),
        state_dir=dict(type='path', default='/var/lib/swanmgr'),
        rule=dict(type='str'),
        timeout=dict(type='int', default=30),
        facts=dict(type='bool', default=False),
        binary=dict(type='path'),
    ), supports_check_mode=True)
    p = module.params
    args = ['status', '-o', 'json', '--socket', p['socket'], '--state-dir', p['state_dir'], '--timeout', '%ds' % p['timeout']]
    if p['rule']:
        args += ['--rule', p['rule']]
    rc, doc, err = run_json(module, args)
    rules = {}
    for row in doc.get('security_associations') or []:
        if not row.get('managed') or not row.get('rule'):
            continue
        r = rules.setdefault(row['rule'], dict(filters=0, installed=0))
        r['filters'] += 1
        if row.get('state') == 'INSTALLED':
            r['installed'] += 1
    reachable = bool((doc.get('daemon') or {}).get('reachable'))
    res = dict(changed=False, status=doc, rules=rules, reachable=reachable)
    if p['facts']:
        res['ansible_facts'] = dict(swanmgr_status=doc)
    if rc != 0:
        module.fail_json(msg='swanmgr status exited %d: %s' % (rc, err.strip()), rc=rc, **res)
    module.exit_json(**res)


if __name__ == '__main__':
    main()
