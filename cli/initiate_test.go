package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/vici/vicitest"
)

const blockOnly = `assign = "Block"
[endpoint]
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Telnet to Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 23

[[filter_action]]
name = "Block"
action = "block"

[[policy]]
name = "Block"
  [[policy.rule]]
  name = "No telnet"
  filter_list = "Telnet to Bob"
  filter_action = "Block"
`

// A policy whose rules need nothing from charon (a block rule on
// libipsec, which the guard alone enforces) is assigned: initiate says
// there is nothing to do, instead of "swanmgr has assigned no policy".
func TestInitiateGuardOnlyPolicy(t *testing.T) {
	srv := vicitest.NewServer(t)
	// A charon that runs libipsec.
	srv.Handle("stats", func(*vicitest.Request) *govici.Message {
		return vicitest.Msg("plugins", []string{"charon", "kernel-libipsec", "kernel-netlink", "socket-default", "vici"})
	})
	state := t.TempDir()
	p := filepath.Join(t.TempDir(), "block.toml")
	if err := os.WriteFile(p, []byte(blockOnly), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--socket", srv.Socket(), "--state-dir", state}
	if code, _, errs := runCLI(append([]string{"apply", "-f", p}, common...)...); code != ExitOK {
		t.Fatalf("apply: exit %d\n%s", code, errs)
	}
	for _, args := range [][]string{{"initiate"}, {"initiate", "-q"}, {"terminate"}} {
		code, out, errs := runCLI(append(args, common...)...)
		if code != ExitOK || strings.Contains(errs, "assigned no policy") || !strings.Contains(out, `policy "Block" has no connection in charon`) {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q; want 0 and nothing to do", args, code, out, errs)
		}
	}
	code, _, errs := runCLI(append([]string{"initiate", "--rule", "No telnet"}, common...)...)
	if code != ExitUsage || !strings.Contains(errs, `none for rule "No telnet": its rules are enforced by the nftables guard alone`) {
		t.Errorf("initiate --rule: exit %d, %q", code, errs)
	}
}
