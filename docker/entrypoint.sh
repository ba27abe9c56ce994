#!/bin/sh
# Entrypoint of the docker-compose lab's containers (docker-compose.yml);
# TestDockerLab (e2e) runs it in real containers.
#
# `swanmgr lab host` writes strongswan.conf exactly as `swanmgr lab up` does
# for each of its hosts, starts charon, waits for its VICI socket, checks
# that charon loaded its plugins and that /etc/protocols has the policy's
# protocols, applies $SWANMGR_POLICY and runs the policy agent (swanmgr
# agent) in the foreground until SIGTERM (docker stop), which keeps charon
# converged with the policy and initiates again a rule's CHILD_SA that went
# down. Any failure: a message and exit 1.
# Settings come from the environment (see docker-compose.yml):
#   SWANMGR_HOST           host name (alice, bob, eve)
#   SWANMGR_POLICY         policy file to apply
#   SWANMGR_IPSEC_BACKEND  kernel (needs ESP in the host's kernel) or libipsec
#                          (userspace ESP; needs /dev/net/tun)
#   SWANMGR_HOST_DIR       strongswan.conf, charon.vici, charon.log
#                          (default /var/lib/swanmgr/host)
set -eu
: "${SWANMGR_HOST:?set SWANMGR_HOST to the host name}"
: "${SWANMGR_POLICY:?set SWANMGR_POLICY to the policy file}"
exec swanmgr lab host "$@"
