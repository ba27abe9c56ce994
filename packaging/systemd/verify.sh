#!/bin/sh
# Checks swanmgr.service with systemd-analyze verify, as `make test` does:
# the unit with ExecStart pointing at BINARY (verify wants it executable).
# Any remark of systemd-analyze (unknown keys, bad values only warn) fails.
# Works where systemd is not PID 1 (containers, CI).
set -eu
bin=$(realpath "${1:?usage: verify.sh BINARY}")
here=$(dirname "$0")
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze is missing (apt-get install systemd)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/sbin/swanmgr|$bin|g" "$here/swanmgr.service" > "$tmp/swanmgr.service"
if ! out=$(systemd-analyze verify --man=no "$tmp/swanmgr.service" 2>&1) || [ -n "$out" ]; then
	echo "systemd-analyze verify packaging/systemd/swanmgr.service:" >&2
	echo "$out" >&2
	exit 1
fi
echo "systemd-analyze verify: packaging/systemd/swanmgr.service is valid"
