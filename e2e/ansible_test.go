package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/lab"
)

// requireAnsible returns the paths of the Ansible commands, failing (opted
// in) or skipping without them.
func requireAnsible(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range []string{"ansible-playbook", "ansible-galaxy", "ansible-doc"} {
		p, err := exec.LookPath(name)
		if err != nil {
			if os.Getenv(optIn) == "1" {
				t.Fatalf("%s=1 but %s is missing (apt-get install ansible-core): %v", optIn, name, err)
			}
			t.Skipf("no %s here (set %s=1 to make this a failure)", name, optIn)
		}
		out[name] = p
	}
	return out
}

// fleet is the collection built and installed for one test, and an
// inventory of lab hosts reached by a local connection.
type fleet struct {
	t    *testing.T
	l    *testLab
	dir  string
	env  []string
	bins map[string]string
}

var recapLine = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// recap is one host's PLAY RECAP: ok, changed, unreachable, failed.
type recap struct{ ok, changed, unreachable, failed int }

// playbook runs ansible-playbook with args and returns its output and
// recap per host.
func (f *fleet) playbook(wantOK bool, args ...string) (string, map[string]recap) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bins["ansible-playbook"], append([]string{"-i", filepath.Join(f.dir, "inventory.yml")}, args...)...)
	cmd.Dir, cmd.Env = f.dir, f.env
	b, err := cmd.CombinedOutput()
	out := string(b)
	if (err == nil) != wantOK {
		f.t.Fatalf("ansible-playbook %v: %v (want success %v)\n%s", args, err, wantOK, out)
	}
	got := map[string]recap{}
	for _, m := range recapLine.FindAllStringSubmatch(out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		got[m[1]] = recap{n(2), n(3), n(4), n(5)}
	}
	return out, got
}

// newFleet builds swanmgr and the collection (ansible-galaxy collection
// build), installs it into the test's collections path, and writes an
// inventory and a playbook for the lab's hosts: each has its own
// configuration folder, its charon's socket and the lab's state folder
// as host variables.
func newFleet(t *testing.T, l *testLab, policies map[string]string, keys map[string][]string) *fleet {
	t.Helper()
	bins := requireAnsible(t)
	dir := t.TempDir()
	f := &fleet{t: t, l: l, dir: dir, bins: bins}
	for _, d := range []string{"tmp-local", "tmp-remote", "collections", "hosts"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "ansible.cfg")
	os.WriteFile(cfg, []byte("[defaults]\nnocolor = true\nretry_files_enabled = false\n"), 0o644)
	f.env = append(os.Environ(), "ANSIBLE_CONFIG="+cfg, "ANSIBLE_COLLECTIONS_PATH="+filepath.Join(dir, "collections"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp-local"), "ANSIBLE_REMOTE_TEMP="+filepath.Join(dir, "tmp-remote"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0", "HOME="+dir)

	bin := filepath.Join(dir, "swanmgr")
	if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "../cmd/swanmgr").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	src, _ := filepath.Abs(filepath.Join("..", "ansible", "ansible_collections", "swanmgr", "ipsec"))
	build := exec.Command(bins["ansible-galaxy"], "collection", "build", "--output-path", dir, src)
	build.Env = f.env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("ansible-galaxy collection build: %v\n%s", err, out)
	}
	tars, _ := filepath.Glob(filepath.Join(dir, "swanmgr-ipsec-*.tar.gz"))
	if len(tars) != 1 {
		t.Fatalf("ansible-galaxy collection build wrote %v, want one swanmgr-ipsec-*.tar.gz", tars)
	}
	inst := exec.Command(bins["ansible-galaxy"], "collection", "install", "-p", filepath.Join(dir, "collections"), tars[0])
	inst.Env = f.env
	if out, err := inst.CombinedOutput(); err != nil {
		t.Fatalf("ansible-galaxy collection install: %v\n%s", err, out)
	}
	unit, _ := filepath.Abs(filepath.Join("..", "packaging", "systemd", "swanmgr.service"))

	var inv strings.Builder
	inv.WriteString("all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: /usr/bin/python3\n")
	fmt.Fprintf(&inv, "    swanmgr_binary_src: %q\n    swanmgr_state_dir: %q\n    swanmgr_wait: established\n    swanmgr_wait_timeout: 60\n", bin, l.stateDir)
	fmt.Fprintf(&inv, "    swanmgr_agent: true\n    swanmgr_agent_start: false\n    swanmgr_unit_src: %q\n", unit)
	inv.WriteString("  hosts:\n")
	var names []string
	for h := range policies {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		root := filepath.Join(dir, "hosts", h)
		fmt.Fprintf(&inv, "    %s:\n      swanmgr_socket: %q\n      swanmgr_policy_src: %q\n", h, l.Host(h).Socket, policies[h])
		fmt.Fprintf(&inv, "      swanmgr_config_dir: %q\n      swanmgr_sbin_dir: %q\n      swanmgr_unit_dir: %q\n",
			filepath.Join(root, "etc"), filepath.Join(root, "sbin"), filepath.Join(root, "systemd"))
		for _, d := range []string{"sbin", "systemd"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		fmt.Fprintf(&inv, "      swanmgr_key_files:\n")
		for _, k := range keys[h] {
			fmt.Fprintf(&inv, "        - {name: %q, src: %q}\n", filepath.Base(k), k)
		}
	}
	os.WriteFile(filepath.Join(dir, "inventory.yml"), []byte(inv.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "site.yml"), []byte(`- hosts: all
  gather_facts: false
  roles:
    - swanmgr.ipsec.swanmgr
`), 0o644)
	os.WriteFile(filepath.Join(dir, "status.yml"), []byte(`- hosts: all
  gather_facts: false
  tasks:
    - swanmgr.ipsec.swanmgr_status:
        socket: "{{ swanmgr_socket }}"
        state_dir: "{{ swanmgr_state_dir }}"
        binary: "{{ swanmgr_sbin_dir }}/swanmgr"
      register: st
    - ansible.builtin.assert:
        that:
          - st.reachable
          - st.rules | length > 0
          - st.rules.values() | map(attribute='installed') | min > 0
`), 0o644)
	return f
}

// childIDs maps each INSTALLED CHILD_SA of a host to its unique id.
func childIDs(l *testLab, host string) map[string][]uint64 {
	out := map[string][]uint64{}
	for _, sa := range l.sas(host) {
		for _, ch := range sa.Children {
			if ch.State == "INSTALLED" {
				out[ch.Name] = append(out[ch.Name], ch.UniqueID)
			}
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// undisturbed says whether the CHILD_SAs now are those of before: the same
// names, and no SA that was not there before. One of two SAs of a name may
// have gone: when both ends start their connections at once, charon keeps
// both IKE_SAs for a moment and deletes the duplicate 10 s later
// (uniqueness policy), which no run of the playbook causes.
func undisturbed(before, now map[string][]uint64) bool {
	if len(before) != len(now) {
		return false
	}
	for name, ids := range now {
		was, ok := before[name]
		if !ok || len(ids) == 0 {
			return false
		}
		for _, id := range ids {
			if !slices.Contains(was, id) {
				return false
			}
		}
	}
	return true
}

// TestAnsibleFleet drives the knowledge-base fleet (Alice, Bob, Eve, each
// a charon in the namespace lab) with the swanmgr.ipsec collection, built
// and installed as an operator would, through real ansible-playbook runs.
func TestAnsibleFleet(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	ex := l.example("alice-bob-eve")
	policies := map[string]string{}
	for _, h := range []string{"alice", "bob", "eve"} {
		policies[h] = filepath.Join(ex, h+".toml")
	}
	keys := map[string][]string{
		"alice": {filepath.Join(ex, "alice-bob.psk"), filepath.Join(ex, "alice-eve.psk")},
		"bob":   {filepath.Join(ex, "alice-bob.psk")},
		"eve":   {filepath.Join(ex, "alice-eve.psk")},
	}
	var secrets []string
	for _, k := range []string{"alice-bob.psk", "alice-eve.psk"} {
		b, err := os.ReadFile(filepath.Join(ex, k))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(b)))
	}
	f := newFleet(t, l, policies, keys)
	noSecret := func(what, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Fatalf("%s: a preshared key is in Ansible's output", what)
			}
		}
	}
	hosts := []string{"alice", "bob", "eve"}

	// 1. First run: every host changed, SAs up (wait: established),
	// Alice's traffic to Bob encrypted.
	out, rc := f.playbook(true, "site.yml")
	noSecret("first run", out)
	for _, h := range hosts {
		if rc[h].changed == 0 || rc[h].failed != 0 {
			t.Fatalf("first run: %s %+v, want changed\n%s", h, rc[h], out)
		}
	}
	for _, h := range hosts {
		for _, k := range keys[h] {
			st, err := os.Stat(filepath.Join(f.dir, "hosts", h, "etc", filepath.Base(k)))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s's key file %s: %v, mode %v; want 0600", h, filepath.Base(k), err, st.Mode().Perm())
			}
		}
		unit, err := os.ReadFile(filepath.Join(f.dir, "hosts", h, "systemd", "swanmgr.service"))
		wantExec := "ExecStart=" + filepath.Join(f.dir, "hosts", h, "sbin", "swanmgr") + " agent -f " + filepath.Join(f.dir, "hosts", h, "etc") + "/policy.toml"
		if err != nil || !strings.Contains(string(unit), wantExec) {
			t.Fatalf("%s's agent unit: %v; want packaging/systemd/swanmgr.service with %q\n%s", h, err, wantExec, unit)
		}
	}
	// wait: established returned only with the SAs up: no polling here.
	before := map[string]map[string][]uint64{}
	for h, kids := range map[string][]string{
		"alice": {"sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3", "sm-syslog-with-eve-1"},
		"bob":   {"sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3"},
		"eve":   {"sm-syslog-with-alice-1"},
	} {
		got := childIDs(l, h)
		for _, k := range kids {
			if len(got[k]) == 0 {
				t.Fatalf("after the first run %s has no INSTALLED %s (installed: %v)", h, k, got)
			}
		}
		before[h] = got
	}
	l.sendEncrypted("alice", "bob", 6667)
	if out, _ := f.playbook(true, "status.yml"); !strings.Contains(out, "All assertions passed") {
		t.Fatalf("swanmgr_status: no assertion passed\n%s", out)
	}

	// 2. Second run, nothing edited, at -vvv: nothing changed, same SAs,
	// and not one key in the output.
	out, rc = f.playbook(true, "site.yml", "-vvv")
	noSecret("second run -vvv", out)
	for _, h := range hosts {
		if rc[h].changed != 0 || rc[h].failed != 0 {
			t.Fatalf("second run: %s %+v, want changed=0\n%s", h, rc[h], out)
		}
		if got := childIDs(l, h); !undisturbed(before[h], got) {
			t.Fatalf("second run: %s's CHILD_SAs %v, want unchanged %v", h, got, before[h])
		}
	}

	// 3. --check --diff with one rule edited on Bob: Bob shows the rule
	// changed, charon and the policy in place stay as they were, Alice
	// and Eve are ok.
	bobPolicy := filepath.Join(f.dir, "hosts", "bob", "etc", "policy.toml")
	inPlace, _ := os.ReadFile(bobPolicy)
	orig, _ := os.ReadFile(policies["bob"])
	edited := strings.Replace(string(orig), "destination_port = 6667", "destination_port = 6669", 1)
	if edited == string(orig) {
		t.Fatal("bob.toml has no destination_port = 6667 to edit")
	}
	os.WriteFile(policies["bob"], []byte(edited), 0o644)
	loads := countLoads(t, l, "bob")
	out, rc = f.playbook(true, "site.yml", "--check", "--diff")
	noSecret("--check --diff", out)
	if rc["bob"].changed == 0 || rc["alice"].changed != 0 || rc["eve"].changed != 0 {
		t.Fatalf("--check --diff: recap %+v; want bob changed, alice and eve not\n%s", rc, out)
	}
	if !strings.Contains(out, `+  sm-abczz-with-alice: changed (children sm-abczz-with-alice-`) || !strings.Contains(out, `rule "Abczz with Alice"`) {
		t.Fatalf("--check --diff: the edited rule is not in the diff\n%s", out)
	}
	if now, _ := os.ReadFile(bobPolicy); string(now) != string(inPlace) {
		t.Fatalf("--check replaced bob's policy in place")
	}
	if got := countLoads(t, l, "bob"); got != loads {
		t.Fatalf("--check: bob's charon logged %d connection loads, %d before", got, loads)
	}
	if got := childIDs(l, "bob"); !undisturbed(before["bob"], got) {
		t.Fatalf("--check: bob's CHILD_SAs %v, want unchanged %v", got, before["bob"])
	}
	os.WriteFile(policies["bob"], orig, 0o644)

	// 4. One host given a policy swanmgr refuses (its rule names a filter
	// list the file lacks): that host fails with swanmgr's reason and
	// keeps its assignment, the others succeed.
	origEve, _ := os.ReadFile(policies["eve"])
	bad := strings.Replace(string(origEve), "filter_list = \"Syslog from Alice's PC\"", "filter_list = \"Syslog from Alices PC\"", 1)
	if bad == string(origEve) {
		t.Fatal("eve.toml has no rule naming its filter list")
	}
	os.WriteFile(policies["eve"], []byte(bad), 0o644)
	out, rc = f.playbook(false, "site.yml")
	noSecret("a policy eve cannot have", out)
	if rc["eve"].failed == 0 || rc["alice"].failed != 0 || rc["bob"].failed != 0 {
		t.Fatalf("a policy eve cannot have: recap %+v; want eve failed, alice and bob ok\n%s", rc, out)
	}
	if !strings.Contains(out, `filter_list \"Syslog from Alices PC\" not found`) {
		t.Fatalf("eve's failure does not give swanmgr's reason\n%s", out)
	}
	if got := childIDs(l, "eve"); !undisturbed(before["eve"], got) {
		t.Fatalf("after the failed run eve's CHILD_SAs are %v, want her previous assignment's %v", got, before["eve"])
	}
	os.WriteFile(policies["eve"], origEve, 0o644)

	// 5. state: absent: swanmgr's connections go, one loaded by hand stays.
	hand := govici.NewMessage()
	hand.Set("remote_addrs", []string{"172.20.0.99"})
	hand.Set("local", mustMsg(map[string]any{"auth": "psk"}))
	hand.Set("remote", mustMsg(map[string]any{"auth": "psk"}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.client("alice").LoadConn(ctx, "by-hand", hand); err != nil {
		t.Fatal(err)
	}
	out, rc = f.playbook(true, "site.yml", "-e", "swanmgr_state=absent")
	noSecret("state=absent", out)
	for _, h := range hosts {
		if rc[h].changed == 0 {
			t.Fatalf("state=absent: %s %+v, want changed\n%s", h, rc[h], out)
		}
		conns, err := l.client(h).Conns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := "[]"
		if h == "alice" {
			want = "[by-hand]"
		}
		if fmt.Sprint(conns) != want {
			t.Fatalf("after state=absent %s has connections %v, want %s", h, conns, want)
		}
	}
	out, rc = f.playbook(true, "site.yml", "-e", "swanmgr_state=absent")
	for _, h := range hosts {
		if rc[h].changed != 0 {
			t.Fatalf("state=absent again: %s %+v, want changed=0\n%s", h, rc[h], out)
		}
	}
}

// countLoads counts the connections a host's charon logged as loaded.
func countLoads(t *testing.T, l *testLab, host string) int {
	t.Helper()
	log, _ := l.logSince(host, 0)
	return strings.Count(log, "vici connection")
}
