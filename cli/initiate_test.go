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

const negotiateOne = `assign = "P"
[endpoint]
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Abczz to Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 6667

[[filter_action]]
name = "Encrypt"
action = "negotiate"

[[policy]]
name = "P"
  [[policy.rule]]
  name = "Abczz with Bob"
  filter_list = "Abczz to Bob"
  filter_action = "Encrypt"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
`

// The SA comes up between initiate's look and its initiate (charon's own
// start action, or the peer), narrowed by a peer whose filters do not
// mirror ours: charon answers "existing duplicate", and initiate must
// still say that the SA does not carry the filter's traffic, not that it
// is up (TestReversedPorts met this order once in CI).
func TestInitiateDuplicateNarrowed(t *testing.T) {
	srv := vicitest.NewServer(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(p, []byte(negotiateOne), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k.psk"), []byte("lab-only-key-0123456789-abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--socket", srv.Socket(), "--state-dir", t.TempDir()}
	if code, _, errs := runCLI(append([]string{"apply", "-f", p}, common...)...); code != ExitOK {
		t.Fatalf("apply: exit %d\n%s", code, errs)
	}
	narrowed := vicitest.Msg("sm-abczz-with-bob", vicitest.Msg(
		"uniqueid", "1", "version", "2", "state", "ESTABLISHED", "local-host", "172.16.98.231", "remote-host", "172.31.67.244",
		"child-sas", vicitest.Msg(
			"sm-abczz-with-bob-1-1", vicitest.Msg("name", "sm-abczz-with-bob-1", "uniqueid", "1", "state", "INSTALLED",
				"local-ts", []string{"172.16.98.231/32[tcp/6667]"}, "remote-ts", []string{"172.31.67.244/32[tcp/6667]"}),
		)))
	srv.Handle("initiate", func(r *vicitest.Request) *govici.Message {
		srv.SetSAs(narrowed)
		r.Event("control-log", vicitest.Msg("group", "IKE", "level", "1",
			"msg", "not establishing CHILD_SA sm-abczz-with-bob-1{2} due to existing duplicate {1} with SPIs c1_i c2_o and TS 172.16.98.231/32[tcp/6667] === 172.31.67.244/32[tcp/6667]"))
		return vicitest.Failed("establishing CHILD_SA 'sm-abczz-with-bob-1' failed")
	})
	code, out, errs := runCLI(append([]string{"initiate", "-q"}, common...)...)
	if code != ExitFailure || !strings.Contains(errs, "the peer's filters do not mirror yours") || strings.Contains(out, "already up") {
		t.Errorf("initiate: exit %d\nstdout %q\nstderr %q; want 1 and the mirror explanation", code, out, errs)
	}
	// Not narrowed, the duplicate is up and carries the traffic: exit 0.
	srv.Handle("initiate", func(r *vicitest.Request) *govici.Message {
		srv.SetSAs(vicitest.Msg("sm-abczz-with-bob", vicitest.Msg(
			"uniqueid", "1", "version", "2", "state", "ESTABLISHED", "local-host", "172.16.98.231", "remote-host", "172.31.67.244",
			"child-sas", vicitest.Msg(
				"sm-abczz-with-bob-1-1", vicitest.Msg("name", "sm-abczz-with-bob-1", "uniqueid", "1", "state", "INSTALLED",
					"local-ts", []string{"172.16.98.231/32[tcp]"}, "remote-ts", []string{"172.31.67.244/32[tcp/6667]"}),
			))))
		r.Event("control-log", vicitest.Msg("group", "IKE", "level", "1", "msg", "not establishing CHILD_SA sm-abczz-with-bob-1{2} due to existing duplicate {1}"))
		return vicitest.Failed("establishing CHILD_SA 'sm-abczz-with-bob-1' failed")
	})
	srv.SetSAs()
	code, out, errs = runCLI(append([]string{"initiate", "-q"}, common...)...)
	if code != ExitOK || !strings.Contains(out, "an SA for the same traffic is already up") {
		t.Errorf("initiate, duplicate not narrowed: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
}
