#!/usr/bin/python
# -*- coding: utf-8 -*-
# A thin wrapper over the swanmgr binary on the managed host: plan (check
# mode), apply and unassign, read from their JSON document
# (docs/apply-json.md). It reimplements nothing.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: swanmgr_policy
short_description: Assign a swanmgr IPsec policy to strongSwan's charon, or unassign it
description:
  - Runs C(swanmgr apply) (I(state=present)) or C(swanmgr unassign) (I(state=absent)) on the managed host
    and reports what swanmgr reported - only what changed is loaded into charon, so the SAs of unchanged
    rules stay up; if charon rejects anything, the previous assignment is put back and the task fails
    with charon's reason and what was rolled back.
  - In check mode it runs C(swanmgr plan) (or reads C(swanmgr status) for I(state=absent)) and changes nothing.
  - C(changed) is true only when charon (or swanmgr's record of it) changed, so a second run with nothing
    edited reports C(ok).
  - With diff mode, before and after list each rule with its connections, the secrets by name and the
    SAs a change tears down. Secret values never appear - swanmgr reads the key files the policy names
    itself and never prints them, and no option of this module takes a secret.
  - Needs the C(swanmgr) binary on the managed host (the C(swanmgr.ipsec.swanmgr) role installs it).
version_added: "0.1.0"
author:
  - swanmgr developers
options:
  policy:
    description:
      - Path of the policy file (TOML) on the managed host, or of a folder of C(*.toml) files that make one
        policy (as swanctl's conf.d). Key files it names are read from there too.
      - Required when I(state=present).
    type: path
  state:
    description:
      - C(present) assigns the policy (C(swanmgr apply)); C(absent) removes what swanmgr loaded into this
        charon (C(swanmgr unassign)) and nothing else.
    type: str
    choices: [present, absent]
    default: present
  socket:
    description: charon's VICI socket on the managed host.
    type: str
    default: /var/run/charon.vici
  state_dir:
    description: Where swanmgr records what it loaded into each charon (no secrets).
    type: path
    default: /var/lib/swanmgr
  backend:
    description:
      - charon's IPsec backend. Left out, swanmgr uses what charon runs (it detects the kernel-libipsec
        plugin); given and different from what charon runs, the task fails.
    type: str
    choices: [kernel, libipsec]
  insecure_secrets:
    description: Accept key files that group or others can read (C(--insecure-secrets)).
    type: bool
    default: false
  wait:
    description:
      - C(established) waits, after the apply, until every CHILD_SA of the policy's negotiate rules is
        installed (it runs C(swanmgr initiate), which leaves SAs that are up alone), and fails after
        I(wait_timeout) seconds. Bringing SAs up does not count as a change.
      - C(none) returns once the policy is assigned. Ignored in check mode and for I(state=absent).
    type: str
    choices: [none, established]
    default: none
  wait_timeout:
    description: Seconds to wait for I(wait=established).
    type: int
    default: 60
  timeout:
    description: Seconds swanmgr may take for one command (C(--timeout)).
    type: int
    default: 120
  binary:
    description: Path of the swanmgr binary; by default C(swanmgr) on PATH, in /usr/local/sbin or /usr/sbin.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Exit codes and the JSON document are swanmgr's contract (docs/apply-json.md in the swanmgr repository).
  - The policy agent (C(swanmgr agent)) may run on the same host; it keeps charon converged between runs
    and takes the same per-charon lock as this module's apply.
seealso:
  - module: swanmgr.ipsec.swanmgr_status
'''

EXAMPLES = r'''
- name: Assign Alice's policy and wait for her SAs
  swanmgr.ipsec.swanmgr_policy:
    policy: /etc/swanmgr/policy.toml
    wait: established
    wait_timeout: 90

- name: A charon in a lab, by its socket and its own state folder
  swanmgr.ipsec.swanmgr_policy:
    policy: /srv/lab/alice/policy.toml
    socket: /run/lab/alice/charon.vici
    state_dir: /srv/lab/state

- name: Take swanmgr's policy off this host (hand-loaded connections stay)
  swanmgr.ipsec.swanmgr_policy:
    state: absent
'''

RETURN = r'''
result:
  description:
    - swanmgr's document (docs/apply-json.md) of C(apply), C(plan) or C(unassign); for I(state=absent) in
      check mode, C(swanmgr status -o json) (docs/status-json.md).
    - Its C(rules) list each rule's action (added, changed, removed, unchanged, drift), C(connections)
      and C(secrets) the names loaded and unloaded, C(teardown) the SAs torn down, C(error) on failure
      what went wrong and what was rolled back.
  returned: always, when swanmgr ran
  type: dict
  sample:
    schema_version: 1
    command: apply
    changed: true
    policy: "Alice's IPSec"
    backend: kernel
    rules:
      - rule: Abczz with Bob
        action: added
        connections: [{name: sm-abczz-with-bob, action: added}]
    connections: {loaded: [sm-abczz-with-bob], unloaded: []}
    secrets: {loaded: [ike-sm-abczz-with-bob], unloaded: [], kept: []}
    error: null
rules:
  description: Each rule's action, by rule name (a shortcut into C(result)).
  returned: always, when swanmgr ran
  type: dict
  sample: {"Abczz with Bob": added}
established:
  description: With I(wait=established), whether every negotiate rule's CHILD_SAs were installed.
  returned: when wait=established and not in check mode
  type: bool
rc:
  description: swanmgr's exit code (0 success, 1 failed, 2 usage, see docs/commands.md).
  returned: on failure
  type: int
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swanmgr.ipsec.plugins.module_utils.swanmgr import (
    binary, common_argument_spec, daemon_args, run_json)


def rule_lines(doc):
    """The diff's before and after, one line per rule and connection, then
    the secrets by name, the guard and the SAs a change tears down."""
    before, after = [], []
    for r in doc.get('rules') or []:
        head = 'rule "%s"' % r['rule']
        action = r['action']
        conns = r.get('connections') or []
        if action != 'added':
            before.append(head)
        if action != 'removed':
            after.append(head)
        for c in conns:
            name, act = c['name'], c.get('action', action)
            if act == 'drift':
                before.append('  %s: missing from charon' % name)
                after.append('  %s: loaded (as recorded)' % name)
            elif act == 'changed':
                what = []
                if c.get('ike_changed'):
                    what.append('IKE settings')
                if c.get('changed_children'):
                    what.append('children ' + ', '.join(c['changed_children']))
                before.append('  %s: loaded (as last applied)' % name)
                after.append('  %s: changed%s' % (name, (' (' + '; '.join(what) + ')') if what else ''))
            elif act == 'added':
                after.append('  %s: loaded' % name)
            elif act == 'removed':
                before.append('  %s: loaded' % name)
            else:
                before.append('  %s: loaded' % name)
                after.append('  %s: loaded' % name)
    secrets = doc.get('secrets') or {}
    for s in secrets.get('kept') or []:
        before.append('secret %s' % s)
        after.append('secret %s' % s)
    for s in secrets.get('loaded') or []:
        after.append('secret %s (new or changed value)' % s)
    for s in secrets.get('unloaded') or []:
        before.append('secret %s' % s)
    g = doc.get('guard')
    if g:
        if not g.get('removed'):
            after.append('guard %s: %d rules guarded, %d entries' % (g['table'], g['rules_guarded'], g['entries']))
        if g.get('drift'):
            before.append('guard %s: not what swanmgr installed (missing or changed)' % g['table'])
        elif g.get('entries_added') or g.get('entries_removed') or g.get('removed'):
            before.append('guard %s: as installed (%s entries to add or change, %s to remove)'
                          % (g['table'], g.get('entries_added'), g.get('entries_removed')))
        elif not g.get('removed'):
            before.append(after[-1])
    for sa in doc.get('teardown') or []:
        if sa.get('whole_ike_sa') or not sa.get('child_sas'):
            what = 'IKE_SA %s #%d with %s' % (sa['connection'], sa['ike_sa'], sa['remote'])
        else:
            what = 'CHILD_SA ' + ', '.join('%s #%d' % (c['name'], c['unique_id']) for c in sa['child_sas'])
        before.append('SA %s of rule "%s" (torn down by the change)' % (what, sa['rule']))
    return before, after


def status_lines(status):
    """The diff's before for unassign in check mode: the assigned policy's rules."""
    p = status.get('policy')
    if not p:
        return []
    return ['rule "%s"' % r for r in p.get('rules') or []]


def diff_for(module, before, after):
    p = module.params
    where = 'charon at %s' % p['socket']
    return dict(before='\n'.join(before) + ('\n' if before else ''), after='\n'.join(after) + ('\n' if after else ''),
                before_header=where, after_header=p['policy'] or '(nothing assigned)')


def wait_established(module, deadline):
    """Runs swanmgr initiate -q until it exits 0 (every negotiate rule's
    CHILD_SAs up and as configured) or the deadline passes."""
    cmd = [binary(module), 'initiate', '-q'] + daemon_args(module)
    last = ''
    while True:
        left = deadline - time.time()
        if left <= 0:
            return False, last
        # One try may take at most what is left (and at most 15 s), so
        # a peer that comes up later is tried again.
        per = max(2, min(15, int(left)))
        rc, out, err = module.run_command(cmd + ['--negotiation-timeout', '%ds' % per], environ_update={'LC_ALL': 'C'})
        if rc == 0:
            return True, ''
        last = (err or out).strip()
        time.sleep(1)


def main():
    spec = common_argument_spec()
    spec.update(
        policy=dict(type='path'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        backend=dict(type='str', choices=['kernel', 'libipsec']),
        insecure_secrets=dict(type='bool', default=False),
        wait=dict(type='str', default='none', choices=['none', 'established']),
        wait_timeout=dict(type='int', default=60),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[('state', 'present', ['policy'])])
    p = module.params
    start = time.time()

    if p['state'] == 'absent':
        if module.check_mode:
            rc, doc, err = run_json(module, ['status', '-o', 'json', '--socket', p['socket'], '--state-dir', p['state_dir']])
            changed = doc.get('policy') is not None
            res = dict(changed=changed, result=doc, rules={})
            if module._diff:
                res['diff'] = diff_for(module, status_lines(doc), [])
            module.exit_json(**res)
        args = ['unassign', '-o', 'json'] + daemon_args(module)
    else:
        cmd = 'plan' if module.check_mode else 'apply'
        args = [cmd, '-o', 'json', '-f', p['policy']] + daemon_args(module)
        if p['backend']:
            args += ['--ipsec-backend', p['backend']]
        if p['insecure_secrets']:
            args.append('--insecure-secrets')

    rc, doc, err = run_json(module, args)
    for w in doc.get('warnings') or []:
        module.warn(w)
    res = dict(changed=bool(doc.get('changed')), result=doc,
               rules=dict((r['rule'], r['action']) for r in doc.get('rules') or []))
    if module._diff:
        before, after = rule_lines(doc)
        res['diff'] = diff_for(module, before, after)
    e = doc.get('error')
    if rc != 0 or e:
        msg = e['message'] if e else 'swanmgr exited %d: %s' % (rc, err.strip())
        module.fail_json(msg=msg, rc=rc, stderr=err, **res)

    if p['state'] == 'present' and p['wait'] == 'established' and not module.check_mode:
        ok, why = wait_established(module, start + p['wait_timeout'])
        res['established'] = ok
        if not ok:
            module.fail_json(msg='the SAs of the policy did not come up within %ds: %s' % (p['wait_timeout'], why), **res)
    module.exit_json(**res)


if __name__ == '__main__':
    main()
