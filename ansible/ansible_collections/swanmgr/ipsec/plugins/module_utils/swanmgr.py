# -*- coding: utf-8 -*-
# Shared by the swanmgr.ipsec modules: find the swanmgr binary on the
# managed host, run it with -o json and read its one JSON document
# (docs/apply-json.md, docs/status-json.md). Nothing here handles a
# secret: swanmgr reads key files itself and never prints their content.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# The result document's schema_version this collection reads.
RESULT_SCHEMA_VERSION = 1


def common_argument_spec():
    """Options every swanmgr module takes."""
    return dict(
        socket=dict(type='str', default='/var/run/charon.vici'),
        state_dir=dict(type='path', default='/var/lib/swanmgr'),
        binary=dict(type='path'),
        timeout=dict(type='int', default=120),
    )


def binary(module):
    """The swanmgr binary: the binary option, else swanmgr on PATH or in
    /usr/local/sbin (where make install and the role put it)."""
    if module.params['binary']:
        return module.params['binary']
    return module.get_bin_path('swanmgr', required=True, opt_dirs=['/usr/local/sbin', '/usr/sbin'])


def daemon_args(module):
    """The flags that say which charon and which record."""
    p = module.params
    return ['--socket', p['socket'], '--state-dir', p['state_dir'], '--timeout', '%ds' % p['timeout']]


def run_json(module, args):
    """Runs swanmgr with args (which ask for -o json) and returns
    (rc, document, stderr). A run that wrote no document fails the task
    with swanmgr's stderr."""
    cmd = [binary(module)] + args
    rc, out, err = module.run_command(cmd, environ_update={'LC_ALL': 'C'})
    try:
        doc = json.loads(out)
    except ValueError:
        module.fail_json(msg='swanmgr wrote no JSON document (exit %d): %s' % (rc, err.strip() or out.strip()),
                         rc=rc, stderr=err, cmd=cmd)
    if not isinstance(doc, dict) or doc.get('schema_version') != RESULT_SCHEMA_VERSION:
        module.fail_json(msg='swanmgr wrote a document of schema_version %r; this collection reads %d'
                         % (doc.get('schema_version') if isinstance(doc, dict) else None, RESULT_SCHEMA_VERSION),
                         rc=rc, stderr=err)
    return rc, doc, err
