package model_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
)

// base is a small valid policy file. Cases edit it with line-preserving
// replacements, so the line numbers below stay true:
//
//	1 assign        5 [[filter_list]]   12 [[filter_action]]   16 [[policy]]
//	4 addresses     7 [[...filter]]     14 action              18 [[policy.rule]]
//	                9 destination       15 security            20 filter_list
//	               11 destination_port                         22 authentication
const base = `assign = "P"
[endpoint]
name = "A"
addresses = ["10.0.0.1"]
[[filter_list]]
name = "FL"
  [[filter_list.filter]]
  source = "me"
  destination = "10.0.0.2"
  protocol = "tcp"
  destination_port = 6667
[[filter_action]]
name = "FA"
action = "negotiate"
security = "high"
[[policy]]
name = "P"
  [[policy.rule]]
  name = "R"
  filter_list = "FL"
  filter_action = "FA"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
`

// labKey is the lab-only key every case's k.psk holds. It must never show
// up in a message.
const labKey = "lab-only-key-0123456789-abcdef"

type file struct {
	data string
	mode os.FileMode
}

type vcase struct {
	name string
	toml string            // the policy; empty: base after edits
	edit []string          // old, new, old, new, ... applied to base
	add  string            // appended to the policy
	file map[string]file   // extra files beside the policy (k.psk is always there unless overridden)
	env  map[string]string // secret_env variables
	opts model.ValidateOptions

	errs  []string // each must be the text of (or within) one error; "t.toml:N: " prefixes pin lines
	warns []string // likewise for warnings
	nerrs int      // when > 0, the exact number of errors
	ok    bool     // the file must be valid
}

func (c vcase) policy(t *testing.T) string {
	if c.toml != "" {
		return c.toml
	}
	s := base
	if len(c.edit)%2 != 0 {
		t.Fatalf("edit needs old/new pairs")
	}
	for i := 0; i < len(c.edit); i += 2 {
		if !strings.Contains(s, c.edit[i]) {
			t.Fatalf("edit: %q not in base", c.edit[i])
		}
		s = strings.Replace(s, c.edit[i], c.edit[i+1], 1)
	}
	return s + c.add
}

// run writes the case into a fresh folder, loads and validates it, and
// returns error and warning texts with the folder removed from paths.
func (c vcase) run(t *testing.T) (errs, warns []string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]file{"k.psk": {labKey + "\n", 0o600}}
	for n, f := range c.file {
		files[n] = f
	}
	for n, f := range files {
		if f.mode == 0 { // a file that must not exist
			continue
		}
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // umask-proof
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "t.toml")
	clean := func(s string) string { return strings.ReplaceAll(s, dir+string(filepath.Separator), "") }
	f, err := model.Parse(path, []byte(c.policy(t)))
	if err != nil {
		var ps model.Problems
		if !errors.As(err, &ps) {
			t.Fatalf("Parse returned %T, not Problems: %v", err, err)
		}
		if !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Parse error does not match ErrInvalid")
		}
		for _, p := range ps {
			errs = append(errs, clean(p.Error()))
		}
		return errs, nil
	}
	o := c.opts
	o.LookupEnv = func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
	a, ws, err := model.Validate(f, o)
	for _, w := range ws {
		if !w.Warning {
			t.Errorf("warning without Warning set: %v", w)
		}
		warns = append(warns, clean(w.Error()))
	}
	if err != nil {
		var ps model.Problems
		if !errors.As(err, &ps) || !errors.Is(err, model.ErrInvalid) {
			t.Fatalf("Validate returned %T, not Problems: %v", err, err)
		}
		if a != nil {
			t.Errorf("Validate returned an Assigned along with errors")
		}
		for _, p := range ps {
			if p.Warning {
				t.Errorf("error marked as warning: %v", p)
			}
			errs = append(errs, clean(p.Error()))
		}
	} else if a == nil {
		t.Fatalf("Validate returned neither an error nor an Assigned")
	}
	return errs, warns
}

func TestValidateMessages(t *testing.T) {
	for _, c := range validateCases {
		t.Run(c.name, func(t *testing.T) {
			errs, warns := c.run(t)
			for _, got := range append(append([]string{}, errs...), warns...) {
				if strings.Contains(got, labKey) || strings.Contains(got, "hunter2") {
					t.Errorf("a message shows the secret: %s", got)
				}
			}
			if c.ok && len(errs) > 0 {
				t.Errorf("want valid, got:\n%s", strings.Join(errs, "\n"))
			}
			if c.nerrs > 0 && len(errs) != c.nerrs {
				t.Errorf("got %d errors, want %d:\n%s", len(errs), c.nerrs, strings.Join(errs, "\n"))
			}
			expect(t, "error", c.errs, errs)
			expect(t, "warning", c.warns, warns)
			if len(c.errs) == 0 && !c.ok && c.nerrs == 0 && len(errs) > 0 {
				t.Errorf("unexpected errors:\n%s", strings.Join(errs, "\n"))
			}
		})
	}
}

func expect(t *testing.T, kind string, want, got []string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.Contains(g, w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no %s contains\n\t%s\ngot:\n\t%s", kind, w, strings.Join(got, "\n\t"))
		}
	}
}

var validateCases = []vcase{
	{name: "base is valid", ok: true},

	// Decoding: syntax, unknown keys, wrong types.
	{name: "syntax error has line and column", edit: []string{"[[filter_action]]", "[[filter_action]"},
		errs: []string{"t.toml:12: column 16: expected end of table array name delimiter ']', but got '\\n' instead"}, nerrs: 1},
	{name: "syntax error in a value", edit: []string{`security = "high"`, `security = high`},
		errs: []string{"t.toml:15: column 12: expected value but found \"high\" instead (key filter_action.security)"}},
	{name: "unknown key with path, line and suggestion", edit: []string{`  filter_list = "FL"`, `  filtr_list = "FL"`},
		errs: []string{"t.toml:20: unknown key policy.rule.filtr_list (did you mean filter_list?)"}, nerrs: 1},
	{name: "unknown endpoint key", edit: []string{"addresses =", "adresses ="},
		errs: []string{"t.toml:4: unknown key endpoint.adresses (did you mean addresses?)"}},
	{name: "unknown key inside an inline table takes the table's line",
		edit: []string{`secret_file = "k.psk"`, `secret_fil = "k.psk"`},
		errs: []string{"t.toml:22: unknown key policy.rule.authentication.secret_fil (did you mean secret_file?)"}},
	{name: "unknown key without a near name", add: "[[policy.rule.filter]]\nx = 1\n",
		errs: []string{"t.toml:23: unknown key policy.rule.filter"}, nerrs: 1},
	{name: "unknown top-level table", add: "[endpoints]\nname = \"x\"\n",
		errs: []string{"t.toml:23: unknown key endpoints (did you mean endpoint?)"}, nerrs: 1},
	{name: "unknown key in two rules is reported at both lines",
		add:  "  [[policy.rule]]\n  name = \"R2\"\n  filter_lst = \"FL\"\n  [[policy.rule]]\n  name = \"R3\"\n  filter_lst = \"FL\"\n",
		errs: []string{"t.toml:25: unknown key policy.rule.filter_lst", "t.toml:28: unknown key policy.rule.filter_lst"}, nerrs: 2},
	{name: "keys are lower case", edit: []string{`name = "FA"`, `Name = "FA"`},
		errs: []string{"t.toml:13: key filter_action.Name: keys are lower case (did you mean name?)"}},
	{name: "wrong type: string for array", edit: []string{`addresses = ["10.0.0.1"]`, `addresses = "10.0.0.1"`},
		errs: []string{"t.toml:4: key endpoint.addresses has the wrong type: found a string, expected an array"}, nerrs: 1},
	{name: "wrong type: string for boolean", add: "default_response_rule = \"no\"\n",
		edit: []string{"[[policy]]\nname = \"P\"\n  [[policy.rule]]", "[[policy]]\nname = \"P\"\ndefault_response_rule = \"no\"\n  [[policy.rule]]"},
		errs: []string{"t.toml:18: key policy.default_response_rule has the wrong type: found a string, expected true or false"}},
	{name: "wrong type: float for integer", edit: []string{`security = "high"`, `rekey_seconds = 1.5`},
		errs: []string{"t.toml:15: key filter_action.rekey_seconds has the wrong type: found a float, expected an integer"}},
	{name: "wrong type: table for array", edit: []string{`authentication = [ { method = "psk", secret_file = "k.psk" } ]`, `authentication = { method = "psk", secret_file = "k.psk" }`},
		errs: []string{"t.toml:22: key policy.rule.authentication has the wrong type: found a table, expected an array"}},
	{name: "wrong type: value for table", toml: "endpoint = 3\n",
		errs: []string{"t.toml:1: key endpoint has the wrong type: found an integer, expected a table"}},
	{name: "wrong type: inline secret must be a string", edit: []string{`secret_file = "k.psk"`, `secret = 1234567890123456789`},
		errs: []string{"t.toml:22: key policy.rule.authentication.secret has the wrong type: found an integer, expected a string"}},
	{name: "wrong type: protocol", edit: []string{`protocol = "tcp"`, `protocol = ["tcp"]`},
		errs: []string{`t.toml:10: filter_list "FL" filter 1: protocol must be a string or a number, not an array`}},
	{name: "wrong type: port", edit: []string{`destination_port = 6667`, `destination_port = true`},
		errs: []string{`t.toml:11: filter_list "FL" filter 1: destination_port must be a number or "any", not a boolean`}},
	{name: "syntax error in an inline secret hides the value", edit: []string{`secret_file = "k.psk"`, `secret = hunter2hunter2hunter2`},
		errs: []string{"t.toml:22: column 49: the value of secret is not valid TOML (details hidden because they could show the secret)"}},
	{name: "bad date as a secret hides the value", edit: []string{`authentication = [ { method = "psk", secret_file = "k.psk" } ]`, "[[policy.rule.authentication]]\n  secret = 2024-13-45"},
		errs: []string{"t.toml:23: column 12: the value of secret is not valid TOML"}},

	// References and names.
	{name: "dangling filter_list with suggestion", edit: []string{`  filter_list = "FL"`, `  filter_list = "FL2"`},
		errs: []string{`t.toml:20: policy "P" rule "R": filter_list "FL2" not found (did you mean "FL"?)`}, nerrs: 1},
	{name: "dangling filter_action with suggestion", edit: []string{`filter_action = "FA"`, `filter_action = "Fa"`},
		errs: []string{`t.toml:21: policy "P" rule "R": filter_action "Fa" not found (did you mean "FA"?)`}, nerrs: 1},
	{name: "dangling reference without a near name", edit: []string{`filter_action = "FA"`, `filter_action = "Something else entirely"`},
		errs: []string{`t.toml:21: policy "P" rule "R": filter_action "Something else entirely" not found`}},
	{name: "missing references", edit: []string{`  filter_list = "FL"`, ``, `  filter_action = "FA"`, ``},
		errs: []string{`t.toml:18: policy "P" rule "R": filter_list is required`, `t.toml:18: policy "P" rule "R": filter_action is required`}},
	{name: "assign not found", edit: []string{`assign = "P"`, `assign = "p"`},
		errs: []string{`t.toml:1: assign: policy "p" not found (did you mean "P"?)`}},
	{name: "assign required with two policies", edit: []string{`assign = "P"`, ``}, add: "[[policy]]\nname = \"Q\"\n",
		errs: []string{`assign is required when the file has 2 policies (one of "P", "Q")`}},
	{name: "no policy", toml: "[endpoint]\naddresses = [\"10.0.0.1\"]\n",
		errs: []string{"no [[policy]]: a policy file needs at least one policy"}},
	{name: "assigned policy without rules", toml: "[endpoint]\naddresses = [\"10.0.0.1\"]\n[[policy]]\nname = \"P\"\n",
		errs: []string{`t.toml:3: policy "P": has no rules`}},
	{name: "duplicate filter list", add: "[[filter_list]]\nname = \"FL\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.0.0.3\"\n",
		errs: []string{`t.toml:24: filter_list "FL": duplicate name`}, nerrs: 1},
	{name: "duplicate filter action", add: "[[filter_action]]\nname = \"FA\"\naction = \"block\"\n",
		errs: []string{`t.toml:24: filter_action "FA": duplicate name`}, nerrs: 1},
	{name: "duplicate policy", add: "[[policy]]\nname = \"P\"\n",
		errs: []string{`t.toml:24: policy "P": duplicate name (also policy 1)`}},
	{name: "duplicate rule", add: "  [[policy.rule]]\n  name = \"R\"\n  filter_list = \"FL\"\n  filter_action = \"FA\"\n  authentication = [ { method = \"psk\", secret_file = \"k.psk\" } ]\n",
		errs: []string{`t.toml:23: policy "P" rule "R": duplicate rule name (also rule 1, at t.toml:18)`}, nerrs: 1},
	{name: "names are required", edit: []string{`name = "FL"`, ``, `name = "FA"`, ``, `  name = "R"`, ``},
		errs: []string{`t.toml:5: filter_list 1: name is required`, `t.toml:12: filter_action 1: name is required`}},

	// Addresses, protocols, ports.
	{name: "endpoint address", edit: []string{`addresses = ["10.0.0.1"]`, `addresses = ["10.0.0.256"]`},
		errs: []string{`t.toml:4: endpoint: addresses[0] "10.0.0.256" is not an IP address`}},
	{name: "endpoint without addresses", edit: []string{`addresses = ["10.0.0.1"]`, ``},
		errs: []string{`t.toml:2: endpoint: addresses is required`}},
	{name: "endpoint id", edit: []string{`name = "A"`, `id = "a\"b"`},
		errs: []string{`t.toml:3: endpoint: id "a\"b" is not a usable IKE identity`}},
	{name: "endpoint interface", edit: []string{`name = "A"`, `lan_interface = "eth 0"`},
		errs: []string{`t.toml:3: endpoint: lan_interface "eth 0" is not an interface name`}},
	{name: "invalid address", edit: []string{`destination = "10.0.0.2"`, `destination = "10.0.0.300"`},
		errs: []string{`t.toml:9: filter_list "FL" filter 1: destination "10.0.0.300" is not an address, subnet, DNS name, "me" or "any"`}},
	{name: "invalid name", edit: []string{`destination = "10.0.0.2"`, `destination = "bob's pc"`},
		errs: []string{`t.toml:9: filter_list "FL" filter 1: destination "bob's pc" is not an address`}},
	{name: "invalid CIDR", edit: []string{`destination = "10.0.0.2"`, `destination = "10.0.0.0/33"`},
		errs: []string{`t.toml:9: filter_list "FL" filter 1: destination "10.0.0.0/33" is not a valid subnet`}},
	{name: "CIDR with host bits", edit: []string{`destination = "10.0.0.2"`, `destination = "10.0.0.2/24"`},
		errs: []string{`t.toml:9: filter_list "FL" filter 1: destination "10.0.0.2/24" has host bits set (did you mean "10.0.0.0/24"?)`}},
	{name: "zoned address", edit: []string{`destination = "10.0.0.2"`, `destination = "fe80::1%eth0"`},
		errs: []string{`destination "fe80::1%eth0": zoned addresses are not supported`}},
	{name: "missing source", edit: []string{`  source = "me"`, ``},
		errs: []string{`t.toml:7: filter_list "FL" filter 1: source is required`}},
	{name: "mixed families", edit: []string{`source = "me"`, `source = "2001:db8::/64"`},
		errs: []string{`filter_list "FL" filter 1: source 2001:db8::/64 and destination 10.0.0.2 are of different IP families`}},
	{name: "port out of range", edit: []string{`destination_port = 6667`, `destination_port = 70000`},
		errs: []string{`t.toml:11: filter_list "FL" filter 1: destination_port 70000 is out of range 0-65535`}},
	{name: "negative port", edit: []string{`destination_port = 6667`, `source_port = -1`},
		errs: []string{`t.toml:11: filter_list "FL" filter 1: source_port -1 is out of range 0-65535`}},
	{name: "port name", edit: []string{`destination_port = 6667`, `destination_port = "ircd"`},
		errs: []string{`t.toml:11: filter_list "FL" filter 1: destination_port "ircd" is not a port 0-65535 or "any"`}},
	{name: "ports without tcp or udp", edit: []string{`protocol = "tcp"`, `protocol = "icmp"`},
		errs: []string{`t.toml:7: filter_list "FL" filter 1: ports need protocol "tcp" or "udp" (protocol is icmp)`}, nerrs: 1},
	{name: "ports without a protocol", edit: []string{`  protocol = "tcp"`, ``},
		errs: []string{`t.toml:7: filter_list "FL" filter 1: ports need protocol "tcp" or "udp" (protocol is any)`}},
	{name: "ports by protocol number are fine", edit: []string{`protocol = "tcp"`, `protocol = 6`}, ok: true},
	{name: "unknown protocol", edit: []string{`protocol = "tcp"`, `protocol = "tcpp"`},
		errs: []string{`t.toml:10: filter_list "FL" filter 1: protocol "tcpp" is not "any", "tcp", "udp", "icmp" or a number 0-255`}},
	{name: "protocol out of range", edit: []string{`protocol = "tcp"`, `protocol = 256`},
		errs: []string{`t.toml:10: filter_list "FL" filter 1: protocol 256 is out of range 0-255`}},
	{name: "icmp on IPv6", toml: strings.NewReplacer(`"10.0.0.1"`, `"2001:db8::1"`, `"10.0.0.2"`, `"2001:db8::2"`, `protocol = "tcp"`, `protocol = "icmp"`, `  destination_port = 6667`, ``).Replace(base),
		errs: []string{`t.toml:10: filter_list "FL" filter 1: protocol icmp (1) never matches IPv6 traffic: use "ipv6-icmp" (58)`}, nerrs: 1},
	{name: "empty filter list", edit: []string{"  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.0.0.2\"\n  protocol = \"tcp\"\n  destination_port = 6667\n", "\n\n\n\n\n"},
		errs: []string{`t.toml:5: filter_list "FL": has no [[filter_list.filter]]`}},
	{name: "mirrored = false", edit: []string{`destination_port = 6667`, `mirrored = false`},
		errs: []string{`t.toml:11: filter_list "FL" filter 1: mirrored = false has no strongSwan equivalent`}, nerrs: 1},
	{name: "mirrored = true is fine", edit: []string{`destination_port = 6667`, `mirrored = true`}, ok: true},

	// Rule shape.
	{name: "negotiate filter without me", edit: []string{`source = "me"`, `source = "10.0.0.3"`},
		errs: []string{`t.toml:18: policy "P" rule "R": filter_list "FL" filter 1 (10.0.0.3 → 10.0.0.2): without a tunnel, one side of a negotiate filter must be this computer`}},
	{name: "negotiate to a subnet without a tunnel", edit: []string{`destination = "10.0.0.2"`, `destination = "10.9.0.0/24"`}, ok: true},
	{name: "negotiate to any without a tunnel", edit: []string{`destination = "10.0.0.2"`, `destination = "any"`}, ok: true},
	{name: "negotiate to a subnet of another family", edit: []string{`destination = "10.0.0.2"`, `destination = "2001:db8::/64"`},
		errs: []string{`is an IPv6 address, and endpoint.addresses has none of that family`}},
	{name: "negotiate peer of another family", edit: []string{`source = "me"`, `source = "2001:db8::1"`, `destination = "10.0.0.2"`, `destination = "me"`},
		errs: []string{`peer 2001:db8::1 is an IPv6 address, and endpoint.addresses has none of that family (10.0.0.1): add this computer's IPv6 address to endpoint.addresses`}},
	// Dual stack: the local address of the peer's family, whichever comes first.
	{name: "dual stack, IPv6 peer, IPv4 listed first", ok: true,
		edit: []string{`addresses = ["10.0.0.1"]`, `addresses = ["10.0.0.1", "2001:db8::10"]`, `destination = "10.0.0.2"`, `destination = "2001:db8::2"`}},
	{name: "dual stack, IPv4 peer, IPv6 listed first", ok: true,
		edit: []string{`addresses = ["10.0.0.1"]`, `addresses = ["2001:db8::10", "10.0.0.1"]`}},
	{name: "inbound tunnel rule ending at this computer", edit: []string{`  name = "R"`, `  name = "R"` + "\n" + `  tunnel_endpoint = "10.0.0.1"`},
		errs: []string{`t.toml:20: policy "P" rule "R": tunnel_endpoint 10.0.0.1 is this computer's own address: Windows needs two one-way tunnel rules`, `keep only the outbound one, whose tunnel_endpoint is the remote gateway`}, nerrs: 1},
	{name: "tunnel endpoint is an address", edit: []string{`  name = "R"`, `  tunnel_endpoint = "gw.example"`},
		errs: []string{`t.toml:19: policy "P" rule "FL": tunnel_endpoint "gw.example" is not an IP address`}},
	{name: "tunnel to a subnet is fine", edit: []string{`  name = "R"`, `  tunnel_endpoint = "10.0.0.9"`, `destination = "10.0.0.2"`, `destination = "10.9.0.0/16"`}, ok: true},
	{name: "tunnel filters take no DNS names", edit: []string{`  name = "R"`, `  tunnel_endpoint = "10.0.0.9"`, `destination = "10.0.0.2"`, `destination = "bobslap"`},
		errs: []string{`a tunnel's filters need addresses or subnets, not DNS names`}},
	{name: "permit with a tunnel endpoint", edit: []string{`action = "negotiate"`, `action = "permit"`, `security = "high"`, ``, `  name = "R"`, `  tunnel_endpoint = "10.0.0.9"`},
		errs: []string{`tunnel_endpoint applies only to negotiate rules (filter action "FA" is permit)`}},
	{name: "block with a DNS name", edit: []string{`action = "negotiate"`, `action = "block"`, `security = "high"`, ``, `destination = "10.0.0.2"`, `destination = "bobslap"`},
		errs: []string{`block rules need addresses, not DNS names`}},
	{name: "authentication on a permit rule is unused", edit: []string{`action = "negotiate"`, `action = "permit"`, `security = "high"`, ``},
		warns: []string{`t.toml:22: warning: policy "P" rule "R": authentication is not used by a permit rule`}, ok: true},
	{name: "network type", edit: []string{`  name = "R"`, `  network = "wan"`},
		errs: []string{`t.toml:19: policy "P" rule "FL": network "wan" is not "lan", "remote-access" or "all"`}},
	{name: "remote-access needs an interface", edit: []string{`  name = "R"`, `  network = "remote-access"`},
		errs: []string{`network = "remote-access" needs endpoint.remote_access_interface`}},
	{name: "remote-access with an interface", edit: []string{`  name = "R"`, `  network = "remote-access"`, `name = "A"`, `remote_access_interface = "ppp0"`}, ok: true},
	{name: "disabled rule is still checked", edit: []string{`  name = "R"`, `  disabled = true`, `filter_action = "FA"`, `filter_action = "FB"`},
		errs: []string{`filter_action "FB" not found`}},
	{name: "unknown action", edit: []string{`action = "negotiate"`, `action = "negociate"`},
		errs: []string{`t.toml:14: filter_action "FA": action "negociate" is not "permit", "block" or "negotiate" (did you mean "negotiate"?)`}},
	{name: "missing action", edit: []string{`action = "negotiate"`, ``},
		errs: []string{`t.toml:12: filter_action "FA": action is required`}},
	{name: "security on a block action", edit: []string{`action = "negotiate"`, `action = "block"`},
		errs: []string{`t.toml:12: filter_action "FA": security settings (security, pfs, esp_*, ah_integrity, pfs_group, rekey_*) apply only to action = "negotiate"`}},
	{name: "unknown security", edit: []string{`security = "high"`, `security = "highest"`},
		errs: []string{`t.toml:15: filter_action "FA": security "highest" is not "high", "medium" or "custom"`}},

	// Refusals.
	{name: "fallback_to_clear", edit: []string{`security = "high"`, `fallback_to_clear = true`},
		errs: []string{`t.toml:15: filter_action "FA": fallback_to_clear = true ("Allow unsecured communication with non-IPSec-aware computer") has no strongSwan equivalent`, "Closest safe choice"}, nerrs: 1},
	{name: "accept_unsecured", edit: []string{`security = "high"`, `accept_unsecured = true`},
		errs: []string{`t.toml:15: filter_action "FA": accept_unsecured = true ("Accept unsecured communication, but always respond using IPSec") has no strongSwan equivalent`, "Closest safe choice"}, nerrs: 1},
	{name: "both refusals and false values", edit: []string{`security = "high"`, "fallback_to_clear = false\naccept_unsecured = false"}, ok: true},
	{name: "kerberos", edit: []string{`{ method = "psk", secret_file = "k.psk" }`, `{ method = "kerberos" }`},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: method = "kerberos" is not available: strongSwan has no Kerberos`, `use method = "certificate"`}, nerrs: 1},
	{name: "unknown method", edit: []string{`method = "psk"`, `method = "pks"`},
		errs: []string{`method "pks" is not "psk" or "certificate" (did you mean "psk"?)`}},

	// Custom security and algorithms.
	{name: "custom ESP", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes256\"]\nesp_integrity = [\"sha256\"]\npfs_group = \"modp3072\"\nrekey_seconds = 3600\nrekey_kilobytes = 100000"}, ok: true},
	{name: "unknown encryption keyword", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes256gcn16\"]"},
		errs: []string{`t.toml:16: filter_action "FA": esp_encryption "aes256gcn16" is not a strongSwan ESP encryption keyword (did you mean "aes256gcm16"?)`}, nerrs: 1},
	{name: "GMAC is not an integrity keyword", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes256\"]\nesp_integrity = [\"aes256gmac\"]"},
		errs: []string{`esp_integrity "aes256gmac" is not a strongSwan integrity keyword`}},
	{name: "keyword aliases of strongSwan 5.9", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"AES256GCM\", \"aes128ccm\"]"}, ok: true},
	{name: "unknown integrity keyword", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes256\"]\nesp_integrity = [\"sha265\"]"},
		errs: []string{`t.toml:17: filter_action "FA": esp_integrity "sha265" is not a strongSwan integrity keyword (did you mean "sha256"?)`}},
	{name: "unknown group", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes256gcm16\"]\npfs_group = \"x2559\""},
		errs: []string{`t.toml:17: filter_action "FA": pfs_group "x2559" is not a strongSwan key exchange group (did you mean "x25519"?)`}},
	{name: "custom without algorithms", edit: []string{`security = "high"`, `security = "custom"`},
		errs: []string{`t.toml:12: filter_action "FA": security = "custom" needs esp_encryption (ESP) or ah_integrity (AH)`}},
	{name: "classic encryption without integrity", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes128\"]"},
		errs: []string{`t.toml:16: filter_action "FA": esp_encryption aes128 needs esp_integrity`}},
	{name: "AEAD with integrity", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes128gcm16\"]\nesp_integrity = [\"sha256\"]"},
		errs: []string{`t.toml:17: filter_action "FA": esp_integrity must be empty with AEAD esp_encryption (aes128gcm16)`}},
	{name: "AEAD mixed with classic", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes128gcm16\", \"aes128\"]\nesp_integrity = [\"sha256\"]"},
		errs: []string{`esp_encryption mixes AEAD algorithms (like aes256gcm16) with classic ones (like aes256)`}},
	{name: "custom keys need custom security", edit: []string{`security = "high"`, "security = \"medium\"\npfs_group = \"ecp384\""},
		errs: []string{`t.toml:12: filter_action "FA": esp_encryption, esp_integrity, ah_integrity, pfs_group and rekey_* need security = "custom" (security is "medium")`}},
	{name: "pfs_group with pfs = false", edit: []string{`security = "high"`, "security = \"custom\"\npfs = false\nesp_encryption = [\"aes128gcm16\"]\npfs_group = \"ecp384\""},
		errs: []string{`pfs_group is set but pfs = false`}},
	{name: "weak algorithms are warned about", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"3des\"]\nesp_integrity = [\"sha1\"]\npfs_group = \"modp1024\""},
		warns: []string{`3des is weak`, `sha1 is weak`, `modp1024 is weak`}, ok: true},
	{name: "rekey bounds", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes128gcm16\"]\nrekey_seconds = 10\nrekey_kilobytes = 0"},
		errs: []string{`t.toml:17: filter_action "FA": rekey_seconds 10 must be between 60 and 2147483647`, `t.toml:18: filter_action "FA": rekey_kilobytes 0 must be positive`}},
	{name: "small rekey volume is warned about", edit: []string{`security = "high"`, "security = \"custom\"\nesp_encryption = [\"aes128gcm16\"]\nrekey_kilobytes = 100"},
		warns: []string{`rekey_kilobytes 100 rekeys every 100 KB, which is very often`}, ok: true},

	// AH.
	{name: "AH is warned about (NAT)", edit: []string{`security = "high"`, "security = \"custom\"\nah_integrity = [\"sha256\"]"},
		warns: []string{`t.toml:16: warning: filter_action "FA": AH authenticates the IP header, so it cannot cross NAT`}, ok: true},
	{name: "AH with ESP", edit: []string{`security = "high"`, "security = \"custom\"\nah_integrity = [\"sha256\"]\nesp_encryption = [\"aes128gcm16\"]"},
		errs: []string{`t.toml:12: filter_action "FA": ah_integrity cannot be combined with esp_encryption/esp_integrity`}},
	{name: "unknown AH keyword", edit: []string{`security = "high"`, "security = \"custom\"\nah_integrity = [\"sha257\"]"},
		errs: []string{`t.toml:16: filter_action "FA": ah_integrity "sha257" is not a strongSwan integrity keyword (did you mean "sha256"?)`}},

	// Preshared keys.
	{name: "psk without a source", edit: []string{`{ method = "psk", secret_file = "k.psk" }`, `{ method = "psk" }`},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: a preshared key needs exactly one of secret_file, secret_env or secret (found 0)`}, nerrs: 1},
	{name: "psk with two sources", edit: []string{`secret_file = "k.psk"`, `secret_file = "k.psk", secret_env = "K"`},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: a preshared key needs exactly one of secret_file, secret_env or secret (found 2)`}, nerrs: 1},
	{name: "psk with certificate keys", edit: []string{`secret_file = "k.psk"`, `secret_file = "k.psk", ca = "ca.pem"`},
		errs: []string{`ca, certificate, private_key and peer_id belong to method = "certificate"`}},
	{name: "secret file missing", file: map[string]file{"k.psk": {}},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: secret_file k.psk: no such file`}, nerrs: 1},
	{name: "secret file readable by others", file: map[string]file{"k.psk": {labKey, 0o644}},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: secret_file k.psk is readable by group or others (mode 0644): run chmod 600 k.psk, or pass --insecure-secrets`}, nerrs: 1},
	{name: "secret file readable by group", file: map[string]file{"k.psk": {labKey, 0o640}},
		errs: []string{`is readable by group or others (mode 0640)`}},
	{name: "secret file readable by others accepted with InsecureSecrets", file: map[string]file{"k.psk": {labKey, 0o644}},
		opts: model.ValidateOptions{InsecureSecrets: true}, ok: true},
	{name: "secret file is a directory", edit: []string{`secret_file = "k.psk"`, `secret_file = "."`},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: secret_file `, ` is a directory`}},
	{name: "secret file with two lines", file: map[string]file{"k.psk": {labKey + "\n" + labKey + "\n", 0o600}},
		errs: []string{`holds more than one line; put only the key in it`}},
	{name: "empty secret file", file: map[string]file{"k.psk": {"\n", 0o600}},
		errs: []string{`the preshared key from secret_file k.psk is empty`}},
	{name: "short preshared key", file: map[string]file{"k.psk": {"hunter2", 0o600}},
		warns: []string{`t.toml:22: warning: policy "P" rule "R" authentication 1: the preshared key from secret_file k.psk is shorter than 20 characters`}, ok: true},
	{name: "inline secret is warned about", edit: []string{`secret_file = "k.psk"`, `secret = "hunter2-but-long-enough-to-pass"`},
		warns: []string{`t.toml:22: warning: policy "P" rule "R" authentication 1: the preshared key is written in the policy file; prefer secret_file (mode 0600) or secret_env`}, ok: true},
	{name: "short inline secret", edit: []string{`secret_file = "k.psk"`, `secret = "hunter2"`},
		warns: []string{`the preshared key is written in the policy file`, `the preshared key from inline secret is shorter than 20 characters`}, ok: true},
	{name: "secret_env unset", edit: []string{`secret_file = "k.psk"`, `secret_env = "SWANMGR_TEST_PSK"`},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: secret_env: environment variable SWANMGR_TEST_PSK is not set`}, nerrs: 1},
	{name: "secret_env set", edit: []string{`secret_file = "k.psk"`, `secret_env = "SWANMGR_TEST_PSK"`},
		env: map[string]string{"SWANMGR_TEST_PSK": labKey}, ok: true},
	{name: "secret_env empty", edit: []string{`secret_file = "k.psk"`, `secret_env = "SWANMGR_TEST_PSK"`},
		env: map[string]string{"SWANMGR_TEST_PSK": ""}, errs: []string{`the preshared key from secret_env SWANMGR_TEST_PSK is empty`}},
	{name: "secrets of unassigned policies are not read", file: map[string]file{"k.psk": {}},
		edit: []string{`assign = "P"`, `assign = "Q"`}, add: "[[policy]]\nname = \"Q\"\n  [[policy.rule]]\n  filter_list = \"FL\"\n  filter_action = \"FA\"\n  authentication = [ { method = \"psk\", secret = \"" + labKey + "\" } ]\n",
		warns: []string{`policy "Q" rule "FL" authentication 1: the preshared key is written in the policy file`}, ok: true},
	{name: "only the first method is used", edit: []string{`secret_file = "k.psk" }`, `secret_file = "k.psk" }, { method = "psk", secret_env = "X" }`},
		warns: []string{`t.toml:22: warning: policy "P" rule "R": only the first authentication method (psk) is used`}, ok: true},
	{name: "later methods are still checked", edit: []string{`secret_file = "k.psk" }`, `secret_file = "k.psk" }, { method = "kerberos" }`},
		errs: []string{`policy "P" rule "R" authentication 2: method = "kerberos" is not available`}, nerrs: 1},
	{name: "disabled rules read no secrets", file: map[string]file{"k.psk": {}}, edit: []string{`  name = "R"`, `  disabled = true`}, ok: true},
	{name: "negotiate without authentication", edit: []string{`  authentication = [ { method = "psk", secret_file = "k.psk" } ]`, ``},
		errs: []string{`t.toml:18: policy "P" rule "R": authentication is required for a negotiate rule`}},
	{name: "one peer, two keys", file: map[string]file{"k2.psk": {labKey + "-other", 0o600}},
		add:  "  [[policy.rule]]\n  name = \"R2\"\n  filter_list = \"FL\"\n  filter_action = \"FA\"\n  authentication = [ { method = \"psk\", secret_file = \"k2.psk\" } ]\n",
		errs: []string{`t.toml:27: policy "P" rule "R2": uses a different preshared key for peer 10.0.0.2 than rule "R"`}, nerrs: 1},
	{name: "one peer, two rules that authenticate differently",
		file: map[string]file{"ca.pem": {exampleFile("ca.pem"), 0o644}, "me.pem": {exampleFile("alice.pem"), 0o644}, "me.key": {exampleFile("alice.key"), 0o600}},
		add:  "  [[policy.rule]]\n  name = \"R2\"\n  filter_list = \"FL\"\n  filter_action = \"FA\"\n  authentication = [ { method = \"certificate\", ca = \"ca.pem\", certificate = \"me.pem\", private_key = \"me.key\" } ]\n",
		errs: []string{`t.toml:27: policy "P" rule "R2": peer 10.0.0.2 is also the peer of rule "R", and the rules use different authentication methods (psk and certificate): strongSwan keeps one peer configuration`}, nerrs: 1},
	{name: "one peer, two rules with the same key", ok: true,
		add: "  [[policy.rule]]\n  name = \"R2\"\n  filter_list = \"FL\"\n  filter_action = \"FA\"\n  authentication = [ { method = \"psk\", secret_file = \"k.psk\" } ]\n"},
	{name: "DNS name peer with a preshared key", edit: []string{`destination = "10.0.0.2"`, `destination = "bobslap"`},
		warns: []string{`t.toml:18: warning: policy "P" rule "R": peer bobslap is a DNS name: charon expects it to authenticate with the IKE identity "bobslap"`}, ok: true},

	// Certificates.
	{name: "certificate needs its files", edit: []string{`{ method = "psk", secret_file = "k.psk" }`, `{ method = "certificate", ca = "ca.pem" }`},
		errs: []string{`method = "certificate" needs certificate`, `method = "certificate" needs private_key`}, nerrs: 2},
	{name: "certificate files are read", edit: []string{`{ method = "psk", secret_file = "k.psk" }`, `{ method = "certificate", ca = "ca.pem", certificate = "me.pem", private_key = "me.key" }`},
		file: map[string]file{"ca.pem": {"CA", 0o644}, "me.pem": {"CERT", 0o644}, "me.key": {"KEY", 0o644}},
		errs: []string{`t.toml:22: policy "P" rule "R" authentication 1: private_key me.key is readable by group or others (mode 0644)`}, nerrs: 1},
	{name: "certificate with a missing CA", edit: []string{`{ method = "psk", secret_file = "k.psk" }`, `{ method = "certificate", ca = "ca.pem", certificate = "me.pem", private_key = "me.key" }`},
		file: map[string]file{"me.pem": {"CERT", 0o644}, "me.key": {"KEY", 0o600}},
		errs: []string{`ca ca.pem: no such file`}, nerrs: 1},
	{name: "certificate with a secret", edit: []string{`{ method = "psk", secret_file = "k.psk" }`, `{ method = "certificate", secret_file = "k.psk", ca = "ca.pem", certificate = "me.pem", private_key = "me.key" }`},
		file: map[string]file{"ca.pem": {"CA", 0o644}, "me.pem": {"CERT", 0o644}, "me.key": {"KEY", 0o600}},
		errs: []string{`secret_file, secret_env and secret belong to method = "psk"`}},

	// Every problem is reported, not only the first.
	{name: "three errors, three problems",
		edit:  []string{`destination_port = 6667`, `destination_port = 70000`, `security = "high"`, `fallback_to_clear = true`, `  filter_list = "FL"`, `  filter_list = "Fl"`},
		nerrs: 3, errs: []string{"t.toml:11:", "t.toml:15:", "t.toml:20:"}},
}

// The example of the issue, laid out so that the dangling reference sits
// on line 31.
const aliceTypo = `assign = "Alice's IPSec"
[endpoint]
name = "Alicepc"
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Abczz to Bob's PC"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 6667
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 6668

[[filter_action]]
name = "Encrypt Abczz"
action = "negotiate"
security = "high"
pfs = true

[[policy]]
name = "Alice's IPSec"
default_response_rule = false
  [[policy.rule]]
  name = "Abczz with Bob"
  # the typo: Bobs for Bob's
  filter_list = "Abczz to Bobs PC"
  filter_action = "Encrypt Abczz"
  network = "lan"
  authentication = [ { method = "psk", secret_file = "alice-bob.psk" } ]
`

func TestIssueExample(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.toml")
	if err := os.WriteFile(filepath.Join(dir, "alice-bob.psk"), []byte(labKey), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := model.Parse(path, []byte(aliceTypo))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = model.Validate(f, model.ValidateOptions{LookupEnv: func(string) (string, bool) { return "", false }})
	want := path + `:31: policy "Alice's IPSec" rule "Abczz with Bob": filter_list "Abczz to Bobs PC" not found (did you mean "Abczz to Bob's PC"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got\n\t%v\nwant\n\t%s", err, want)
	}
}

func TestValidateDoesNotChangeTheFile(t *testing.T) {
	c := vcase{edit: []string{`addresses = ["10.0.0.1"]`, `addresses = ["2001:DB8::0001"]`, `"10.0.0.2"`, `"2001:db8::2"`}}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.psk"), []byte(labKey), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := model.Parse(filepath.Join(dir, "t.toml"), []byte(c.policy(t)))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Endpoint.Addresses[0]; got != "2001:db8::1" {
		t.Errorf("resolved address %q, want the canonical 2001:db8::1", got)
	}
	if got := f.Endpoint.Addresses[0]; got != "2001:DB8::0001" {
		t.Errorf("Validate changed the file's address to %q", got)
	}
}

func TestSecretRedaction(t *testing.T) {
	s := model.NewSecret(labKey)
	a := model.Auth{Method: model.PSK, Secret: s}
	for _, format := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%X"} {
		for _, v := range []any{s, &s, a, &a, []model.Secret{s}, model.ResolvedAuth{PSK: s, Key: s}} {
			if got := sprintf(format, v); strings.Contains(got, labKey) || strings.Contains(got, hexOf(labKey)) {
				t.Errorf("Sprintf(%q, %T) shows the secret: %s", format, v, got)
			}
		}
	}
	if got := s.String(); got != "<redacted>" {
		t.Errorf("String() = %q", got)
	}
	if got := model.NewSecret("").String(); got != "" {
		t.Errorf("empty String() = %q", got)
	}
	if b, _ := s.MarshalText(); strings.Contains(string(b), labKey) {
		t.Errorf("MarshalText shows the secret")
	}
	if b, _ := jsonMarshal(a); strings.Contains(string(b), labKey) {
		t.Errorf("JSON shows the secret: %s", b)
	}
	if s.Reveal() != labKey || s.IsZero() || !model.NewSecret("").IsZero() {
		t.Errorf("Reveal/IsZero do not work")
	}
}

func sprintf(format string, v any) string { return fmt.Sprintf(format, v) }

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// exampleFile is a file of examples/alice-bob-certs (a lab CA, Alice's
// certificate and key).
func exampleFile(name string) string {
	b, err := os.ReadFile(filepath.Join("..", "examples", "alice-bob-certs", name))
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Thousands of rules sharing one key file that cannot be used draw one
// message, at the first rule, with the number of the others; a rule
// naming another file has its own.
func TestSharedBadKeyFileOneMessage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shared.psk"), []byte("a-long-enough-preshared-key-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("[endpoint]\naddresses = [\"192.0.2.1\"]\n[[filter_action]]\nname = \"E\"\naction = \"negotiate\"\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "[[filter_list]]\nname = \"L%d\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"10.0.0.%d\"\n", i, i+1)
	}
	b.WriteString("[[policy]]\nname = \"P\"\n")
	for i := 0; i < 40; i++ {
		file := "shared.psk"
		if i == 39 {
			file = "missing.psk"
		}
		fmt.Fprintf(&b, "[[policy.rule]]\nfilter_list = \"L%d\"\nfilter_action = \"E\"\nauthentication = [{method = \"psk\", secret_file = %q}]\n", i, file)
	}
	p := filepath.Join(dir, "p.toml")
	_, _, err := model.ParseValidate(p, []byte(b.String()), model.ValidateOptions{})
	ps, ok := err.(model.Problems)
	if !ok || len(ps) != 2 {
		t.Fatalf("want two problems (the shared file once, the missing one), got %v", err)
	}
	if !strings.Contains(ps[0].Error(), `rule "L0" authentication 1: secret_file `+filepath.Join(dir, "shared.psk")+` is readable by group or others (mode 0644)`) ||
		!strings.HasSuffix(ps[0].Msg, "(38 more rules name it too)") {
		t.Errorf("shared file: %v", ps[0])
	}
	if !strings.Contains(ps[1].Error(), `rule "L39"`) || !strings.Contains(ps[1].Msg, "missing.psk") || strings.Contains(ps[1].Msg, "more rule") {
		t.Errorf("the other file: %v", ps[1])
	}
}
