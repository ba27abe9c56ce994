#!/bin/sh
# Abczz traffic through the docker-compose lab, run on the Docker host after
# `docker-compose up -d`; what `make demo` shows in the namespace lab:
#   1. every lab host is running (else: its exit code and last log lines),
#      and with libipsec Alice's SAs with Bob are up;
#   2. Bob captures his eth0 and listens on TCP 6667, Alice sends a line;
#   3. the line arrived, and Bob's wire carried it only as ESP (no clear
#      packet to or from port 6667, the text never seen in clear);
#   4. both ends' SAs (swanmgr status).
# Exits 1 with a message when any step fails; Bob's listener and capture
# are stopped on every exit. Traffic stays on the compose network.
# DOCKER_COMPOSE overrides the compose command (e.g. "docker compose");
# COMPOSE_PROJECT_NAME and COMPOSE_FILE are honoured as by compose itself.
set -eu
cd "$(dirname "$0")/.."
DC=${DOCKER_COMPOSE:-docker-compose}
SOCK=/var/lib/swanmgr/host/charon.vici
ALICE=10.67.0.231
BOB=10.67.0.244
PORT=6667
W=/tmp/swanmgr-traffic # Bob's scratch folder

fail() {
	echo "traffic: $*" >&2
	exit 1
}

# 1. The hosts are up. A host whose entrypoint failed has exited.
for h in alice bob eve; do
	id=$($DC ps -q "$h" 2>/dev/null || true)
	[ -n "$id" ] || fail "no container for $h: start the lab with docker-compose up -d --build"
	state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")
	case "$state" in
	running*) ;;
	*)
		echo "traffic: $h is not running (${state% *}, exit ${state#* }); its last log lines:" >&2
		$DC logs --no-color --tail 15 "$h" >&2 || true
		exit 1
		;;
	esac
done

# With libipsec the SAs are started when the policy is applied and nothing
# would encrypt a packet sent before they are up: wait for them (20 s).
# With the kernel backend the first packet starts them (trap policies).
if [ "$($DC exec -T alice printenv SWANMGR_IPSEC_BACKEND)" = libipsec ]; then
	tries=0
	until $DC exec -T alice swanctl --list-sas --uri "unix://$SOCK" | grep -q 'sm-abczz-with-bob-1: .*INSTALLED'; do
		tries=$((tries + 1))
		[ "$tries" -lt 100 ] || fail "alice's SAs with bob are not up after 20 s: $($DC exec -T alice swanctl --list-sas --uri "unix://$SOCK" 2>&1)"
		sleep 0.2
	done
fi

cleanup() {
	$DC exec -T bob sh -c "for p in $W/*.pid; do [ -f \"\$p\" ] && kill \$(cat \"\$p\") 2>/dev/null; done; rm -rf $W" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# 2. Bob's capture and listener, each in the background inside Bob, their
# pids kept for cleanup.
$DC exec -T bob sh -c "rm -rf $W && mkdir -p $W &&
	{ tcpdump -i eth0 -n -l -A -s 0 host $ALICE >$W/wire.txt 2>$W/wire.err & echo \$! >$W/tcpdump.pid; } &&
	{ timeout 30 nc -l $PORT >$W/abczz.txt 2>$W/nc.err & echo \$! >$W/nc.pid; }" ||
	fail "could not start the capture and listener on bob"
tries=0
until $DC exec -T bob sh -c "grep -q 'listening on' $W/wire.err && ss -ltn | grep -q ':$PORT '"; do
	tries=$((tries + 1))
	[ "$tries" -lt 50 ] || fail "bob: capture or listener on $PORT not ready after 10 s: $($DC exec -T bob cat $W/wire.err $W/nc.err 2>&1)"
	sleep 0.2
done

# With the kernel backend the first packet starts IKE (a trap policy) and
# TCP retransmits the SYN once the SA is up, hence the generous -w.
msg="Abczz from alice at $(date -u +%T)"
echo "$msg" | $DC exec -T alice nc -N -w 10 "$BOB" "$PORT" || fail "alice could not send to $BOB:$PORT"
tries=0
until [ "$($DC exec -T bob cat $W/abczz.txt)" = "$msg" ]; do
	tries=$((tries + 1))
	[ "$tries" -lt 50 ] || fail "the message did not arrive at bob (got: $($DC exec -T bob cat $W/abczz.txt))"
	sleep 0.2
done
echo "bob received: $msg"

# 3. What crossed Bob's wire. tcpdump flushes each line (-l); stop it and
# read the capture.
$DC exec -T bob sh -c "kill \$(cat $W/tcpdump.pid) && rm $W/tcpdump.pid"
wire=$($DC exec -T bob cat $W/wire.txt)
esp=$(printf '%s\n' "$wire" | grep -c 'ESP(spi=' || true)
clear=$(printf '%s\n' "$wire" | grep ' IP ' | grep -v 'ESP(' | grep -c "\.$PORT[: ]" || true)
echo "bob's eth0: $esp ESP packets from or to alice, $clear clear packets to or from port $PORT"
if printf '%s\n' "$wire" | grep -qF "$msg"; then
	fail "the message crossed bob's wire in clear"
fi
[ "$clear" -eq 0 ] || fail "$clear packets to or from port $PORT crossed bob's wire in clear"
[ "$esp" -gt 0 ] || fail "no ESP on bob's wire: the message was not encrypted"
echo "only ESP on the wire: the message never crossed in clear"

# 4. Both ends' SAs.
for h in alice bob; do
	echo "--- $h"
	$DC exec -T "$h" swanmgr status --socket "$SOCK" || fail "swanmgr status on $h failed"
done
