package lab

import (
	"fmt"
	"strings"
)

// Plugin lists written to each host's strongswan.conf as charon.load. An
// explicit list keeps the lab independent of /etc/strongswan.d; every
// plugin named here ships in Debian 12's strongswan-charon,
// libstrongswan-extra-plugins or libcharon-extra-plugins (5.9.8).
// curve25519 provides x25519; gcm, aes and openssl the AEAD and CBC
// ciphers; kdf the IKEv2 prf+; counters the IKE event counters that
// `lab status` and VICI get-counters read.
var (
	pluginsCommon = []string{
		"random", "nonce", "openssl", "pem", "pkcs1", "pkcs8", "x509", "pubkey",
		"revocation", "constraints", "curve25519", "aes", "sha1", "sha2", "hmac",
		"gcm", "kdf",
	}
	pluginsTail = []string{"socket-default", "vici", "counters", "updown"}
)

// plugins returns the charon.load list for a backend.
func plugins(b Backend) []string {
	p := append([]string(nil), pluginsCommon...)
	if b == Libipsec {
		p = append(p, "kernel-libipsec")
	}
	p = append(p, "kernel-netlink")
	return append(p, pluginsTail...)
}

// strongswanConf renders the strongswan.conf of one host. cfg level 2
// (verbose) adds a dump of every loaded connection and the proposal and
// selector matching details; it doubles the time of load-conn and writes
// about 4.5 KB per loaded connection, hence off by default.
func strongswanConf(b Backend, host, socket, log string, verbose bool) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# strongswan.conf of lab host %s (backend %s), written by swanmgr's lab package.\n", host, b)
	s.WriteString("# Up rewrites it; the lab does not read /etc/strongswan.conf or /etc/strongswan.d.\n")
	s.WriteString("charon {\n")
	fmt.Fprintf(&s, "\tload = %s\n", strings.Join(plugins(b), " "))
	s.WriteString(`
	# Give up on a silent peer after 1 + 1.4 + 1.96 + 2.74 = 7.1 s instead of
	# the default 165 s, so tests of an unreachable peer finish quickly.
	retransmit_tries = 3
	retransmit_timeout = 1.0
	retransmit_base = 1.4

	install_routes = yes

	plugins {
		vici {
`)
	fmt.Fprintf(&s, "\t\t\tsocket = unix://%s\n", socket)
	s.WriteString("\t\t}\n")
	if b == Libipsec {
		s.WriteString(`		# Host-to-host tunnels (a selector on the IKE peer itself) need these:
		# without them charon refuses the route ("conflicts with IKE traffic");
		# the fwmark keeps IKE packets out of the ipsec0 route in table 220.
		kernel-libipsec {
			allow_peer_ts = yes
		}
		kernel-netlink {
			fwmark = !0x42
		}
		socket-default {
			fwmark = 0x42
		}
`)
	}
	s.WriteString("\t}\n")
	s.WriteString(`
	filelog {
		lab {
`)
	fmt.Fprintf(&s, "\t\t\tpath = %s\n", log)
	s.WriteString(`			append = yes
			flush_line = yes
			time_format = %b %e %T
			time_add_ms = yes
			ike_name = yes
			default = 1
			ike = 2
`)
	if verbose {
		s.WriteString("\t\t\tcfg = 2\n")
	}
	s.WriteString("\t\t}\n\t}\n}\n")
	return s.String()
}
