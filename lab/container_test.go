package lab_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/lab"
)

// An image without libstrongswan-standard-plugins: charon loads
// everything but openssl and gcm, and the check names both packages.
func TestMissingPlugins(t *testing.T) {
	loaded := []string{"charon", "random", "nonce", "pem", "pkcs1", "pkcs8", "x509", "pubkey",
		"revocation", "constraints", "curve25519", "aes", "sha1", "sha2", "hmac", "kdf",
		"kernel-libipsec", "kernel-netlink", "socket-default", "vici", "counters", "updown"}
	got := lab.MissingPlugins(lab.Libipsec, loaded)
	want := []string{"gcm (libstrongswan-standard-plugins)", "openssl (libstrongswan-standard-plugins)"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MissingPlugins = %q, want %q", got, want)
	}
	all := append(loaded, "openssl", "gcm")
	if got := lab.MissingPlugins(lab.Libipsec, all); len(got) != 0 {
		t.Fatalf("all loaded, yet missing %q", got)
	}
	// The kernel backend does not need kernel-libipsec.
	var noLibipsec []string
	for _, p := range all {
		if p != "kernel-libipsec" {
			noLibipsec = append(noLibipsec, p)
		}
	}
	if got := lab.MissingPlugins(lab.Kernel, noLibipsec); len(got) != 0 {
		t.Fatalf("kernel backend: missing %q", got)
	}
	if got := lab.MissingPlugins(lab.Libipsec, noLibipsec); !reflect.DeepEqual(got, []string{"kernel-libipsec (libcharon-extra-plugins)"}) {
		t.Fatalf("libipsec backend without kernel-libipsec: %q", got)
	}
}

func TestCheckProtocols(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "protocols")
	if err := os.WriteFile(file, []byte("# comment\nip\t0\tIP\ntcp\t6\tTCP\t\t# transmission control\nudp\t17\tUDP\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := lab.CheckProtocols(file, []string{"tcp", "udp", "TCP", "50"}); err != nil {
		t.Fatalf("known protocols: %v", err)
	}
	err := lab.CheckProtocols(file, []string{"tcp", "icmp", "sctp"})
	if err == nil || !strings.Contains(err.Error(), "icmp, sctp") || !strings.Contains(err.Error(), "netbase") {
		t.Fatalf("unknown protocols: %v", err)
	}
	// No /etc/protocols at all (debian:bookworm-slim without netbase).
	err = lab.CheckProtocols(filepath.Join(dir, "none"), []string{"tcp"})
	if err == nil || !strings.Contains(err.Error(), "netbase") {
		t.Fatalf("missing file: %v", err)
	}
}
