#!/bin/sh
# Installs what swanmgr's demo and tests need on Debian or Ubuntu, as root:
# strongSwan's charon and swanctl with the userspace IPsec plugin, iproute2,
# tcpdump and nftables; with the argument "test" also docker-compose (the
# tests validate docker-compose.yml with it). Packages already present are
# left alone. Go itself
# must be 1.21 or newer (it then fetches the toolchain go.mod asks for).
set -eu

PACKAGES="strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins strongswan-pki iproute2 tcpdump nftables ca-certificates"
if [ "${1:-}" = test ]; then
	# docker.io/docker-compose/debootstrap: the docker-compose lab, built
	# from a locally made base image; systemd: systemd-analyze verify of
	# the unit file; prometheus: promtool checks the metrics exposition;
	# ansible-core: the Ansible collection (ansible/) and its e2e test;
	# strace: the test that the confirmation files are synced to disk.
	PACKAGES="$PACKAGES docker.io docker-compose debootstrap systemd prometheus ansible-core strace"
fi

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	missing="$missing golang-go"
fi
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: need root to install:$missing" >&2
		exit 1
	fi
	echo "install-deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# Packages that ship a service (docker.io, prometheus) must not start
	# it: the tests start what they need themselves, by pid.
	norc=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		norc=1
	fi
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing || { [ -z "$norc" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
	[ -z "$norc" ] || rm -f /usr/sbin/policy-rc.d
fi
