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
# Wait (at most 10 s) until Bob listens.
tries=0
until $DC exec -T bob sh -c 'ss -ltn | grep -q ":6667 "'; do
	tries=$((tries + 1))
	if [ "$tries" -ge 50 ]; then
		echo "traffic: bob is not listening on 6667" >&2
		exit 1
	fi
	sleep 0.2
done
# With the kernel backend the first packet starts IKE (a trap policy) and
# TCP retransmits the SYN once the SA is up, hence the generous -w.
msg="Abczz from alice at $(date -u +%T)"
echo "$msg" | $DC exec -T alice nc -N -w 10 "$BOB" 6667
wait "$listener" || true
got=$($DC exec -T bob cat /tmp/abczz.txt)
echo "bob received: $got"
if [ "$got" != "$msg" ]; then
	echo "traffic: the message did not arrive" >&2
	exit 1
fi
for h in alice bob; do
	echo "--- $h"
	$DC exec -T "$h" sh -c "swanmgr status --socket $SOCK 2>/dev/null || swanctl --list-sas --uri unix://$SOCK"
done
