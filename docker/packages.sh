#!/bin/sh
# The lab image's packages, shared by Dockerfile and Dockerfile.prebuilt.
# Each one is needed, and --no-install-recommends would leave the
# starred ones out:
#   strongswan-charon, strongswan-swanctl   charon and the VICI plugin
#   libstrongswan-standard-plugins*          openssl and gcm (AES-GCM; IKE fails
#                                            with "AES_GCM_16 ... not supported!")
#   libstrongswan-extra-plugins              curve25519 (x25519)
#   libcharon-extra-plugins                  kernel-libipsec (userspace ESP)
#   netbase*                                 /etc/protocols: charon resolves
#                                            "tcp" in dynamic[tcp/6667]
#   nftables                                 nft, for swanmgr's guard table
#   iproute2 tcpdump netcat-openbsd procps   docker/traffic.sh and debugging
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
	strongswan-charon strongswan-swanctl libstrongswan-standard-plugins \
	libstrongswan-extra-plugins libcharon-extra-plugins \
	netbase nftables iproute2 tcpdump netcat-openbsd procps ca-certificates
rm -rf /var/lib/apt/lists/*
