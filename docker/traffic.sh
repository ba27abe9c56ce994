#!/bin/sh
# One-shot Abczz traffic through the docker-compose lab, run on the Docker
# host after `docker-compose up -d`: Bob listens on TCP 6667, Alice sends a
# line to it, Bob prints what arrived, then both ends show their SAs.
# DOCKER_COMPOSE overrides the compose command (e.g. "docker compose").
set -eu
cd "$(dirname "$0")/.."
DC=${DOCKER_COMPOSE:-docker-compose}
SOCK=/var/lib/swanmgr/host/charon.vici
BOB=10.67.0.244

$DC exec -T bob sh -c 'rm -f /tmp/abczz.txt; timeout 20 nc -l 6667 > /tmp/abczz.txt' &
listener=$!
sleep 1
# With the kernel backend the first packet starts IKE (a trap policy) and
# TCP retransmits the SYN once the SA is up, hence the generous -w.
echo "Abczz from alice at $(date -u +%T)" | $DC exec -T alice nc -N -w 10 "$BOB" 6667
wait "$listener" || true
echo "bob received: $($DC exec -T bob cat /tmp/abczz.txt)"
for h in alice bob; do
	echo "--- $h"
	$DC exec -T "$h" sh -c "swanmgr status --socket $SOCK 2>/dev/null || swanctl --list-sas --uri unix://$SOCK"
done
