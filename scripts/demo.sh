#!/bin/sh
# The knowledge-base scenario (KB301284), live: Alice and Bob in a two-host
# lab on this machine, each with its own charon; swanmgr assigns their
# policies, Abczz messages go both ways, and the wire shows only ESP.
# Run by `make demo` (as root, after install-deps and build).
set -eu
cd "$(dirname "$0")/.."

SWANMGR=${SWANMGR:-./bin/swanmgr}
LAB=${SWANMGR_LAB_DIR:-/var/lib/swanmgr/lab}
# The demo's own files (policy copies, swanmgr's records) live beside the lab.
DEMO=${SWANMGR_DEMO_DIR:-/var/lib/swanmgr/demo}
STATE=$DEMO/state
POL=$DEMO/policies
export SWANMGR_STATE_DIR="$STATE"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root (network namespaces and charon need it)" >&2
	exit 1
fi

say "Lab: a fresh two-host network in namespaces (alice 172.16.98.231, bob 172.31.67.244)"
"$SWANMGR" lab down --dir "$LAB" >/dev/null
rm -rf "$DEMO"
# The kernel here may lack ESP; charon's userspace IPsec (libipsec) works everywhere.
"$SWANMGR" lab up --dir "$LAB" --host alice --host bob --backend libipsec

# The policies and the lab-only key, with the key file private as swanmgr requires.
mkdir -p "$POL"
cp examples/alice-bob/alice.toml examples/alice-bob/bob.toml examples/alice-bob/alice-bob.psk "$POL/"
chmod 600 "$POL/alice-bob.psk"

say "Validate both ends, and check that they agree with each other"
"$SWANMGR" validate -f "$POL/alice.toml" --ipsec-backend libipsec
"$SWANMGR" validate -f "$POL/bob.toml" --ipsec-backend libipsec
"$SWANMGR" check --ipsec-backend libipsec "$POL/alice.toml" "$POL/bob.toml"

say "What Alice's policy becomes in strongSwan (secrets redacted)"
"$SWANMGR" render -f "$POL/alice.toml" --ipsec-backend libipsec

say "Assign the policies (swanmgr apply)"
"$SWANMGR" apply --socket "$LAB/alice/charon.vici" --ipsec-backend libipsec -f "$POL/alice.toml"
"$SWANMGR" apply --socket "$LAB/bob/charon.vici" --ipsec-backend libipsec -f "$POL/bob.toml"

say "Negotiating IP security (swanmgr initiate on Alice)"
"$SWANMGR" initiate --socket "$LAB/alice/charon.vici"

say "Alice → Bob's Abczz port 6667, Bob → Alice's port 6668, with tcpdump on the receiver"
"$SWANMGR" lab send --dir "$LAB" --from alice --to bob --port 6667 --expect-encrypted "Hello Bob, this is Alice on Abczz"
"$SWANMGR" lab send --dir "$LAB" --from bob --to alice --port 6668 --expect-encrypted "Hi Alice, Bob here"

say "IP Security Monitor: Alice (swanmgr status)"
"$SWANMGR" status --socket "$LAB/alice/charon.vici"
say "IP Security Monitor: Bob"
"$SWANMGR" status --socket "$LAB/bob/charon.vici"

say "The lab stays up. Look around (each line pastes as it is):"
BIN=$(cd "$(dirname "$SWANMGR")" && pwd)/$(basename "$SWANMGR")
S="--state-dir $STATE"
cat <<EOF
  $BIN plan     --socket $LAB/alice/charon.vici $S -f $POL/alice.toml
  $BIN initiate --socket $LAB/bob/charon.vici $S
  $BIN status --watch --socket $LAB/alice/charon.vici $S
  $BIN check --ipsec-backend libipsec $POL/alice.toml $POL/bob.toml
  ip netns exec swl-alice nft list table inet swanmgr      (the guard: clear text dropped per rule)
  swanctl --list-sas --uri unix://$LAB/bob/charon.vici
  ip netns exec swl-alice ip addr        (hosts: swl-alice, swl-bob)
  tail -f $LAB/alice/charon.log
  (the example key must stay private: chmod 600 examples/alice-bob/*.psk if Git lost its mode)
Take it down:
  $BIN lab down --dir $LAB && rm -rf $DEMO
EOF
