package importer_test

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/swanmgr/swanmgr/importer"
	"github.com/swanmgr/swanmgr/model"
)

// FuzzParse feeds arbitrary scripts to the parser and both mappings (netsh, consec):
// whatever the script holds, the importer returns an error naming
// FILE:LINE or a policy whose TOML the model's strict loader reads without
// a syntax error or an unknown key, and a preshared key of the script
// never shows up in the TOML, a note or an error. Run it with
// `go test ./importer -fuzz=FuzzParse`.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, p := range files {
		g := readGolden(f, p)
		f.Add([]byte(g.script))
	}
	f.Add([]byte("add rule name=\"a\nb\" policy=x\n"))
	f.Add([]byte("netsh -c ipsec static add filter filterlist=L srcaddr=me dstaddr=10.0.0.0 dstmask=255.0.255.0\n"))
	f.Add([]byte("pushd ipsec static\npopd\npopd\n"))
	f.Add([]byte("add filteraction name=a qmsec=\"ESP[AES256,SHA1]:/ AH[SHA1]+ESP[None,None]:0k\"\n"))
	opts := importer.Options{Addresses: []string{"172.16.98.231"}, KeyPrefix: "k"}
	f.Add([]byte("advfirewall consec add rule name=a endpoint1=any endpoint2=10.0.0.0/8,10.1.1.1 action=requireinrequestout port2=1-2,3 protocol=tcp auth1=computerpsk,computercert auth1psk=k qmsecmethods=ah:sha1+esp:sha1-aes128+5min,authnoencap:aesgmac128\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, imp := range []func(string, []byte, importer.Options) (*importer.Result, error){importer.Netsh, importer.Consec} {
			fuzzOne(t, data, imp, opts)
		}
	})
}

func fuzzOne(t *testing.T, data []byte, imp func(string, []byte, importer.Options) (*importer.Result, error), opts importer.Options) {
	res, err := imp("fuzz.txt", data, opts)
	secrets, other := pskAndOther(t, "fuzz.txt", string(data))
	// What the importer says of the script with each key replaced by
	// another of its length: a key's text that shows up there too is
	// the importer's own words ("requireinreq" in the list of actions
	// it takes), not the key.
	var masked []string
	for _, k := range secrets {
		masked = append(masked, k, maskKey(k))
	}
	maskedOut := sync.OnceValue(func() map[string]string {
		return importerSays(imp, []byte(strings.NewReplacer(masked...).Replace(string(data))), opts)
	})
	leak := func(where, s string) {
		for _, k := range secrets {
			// A key also written elsewhere in the script (as a name,
			// say) may rightly show up, and a short one can be a word
			// of the message itself ("etsh" in "netsh").
			if len(k) >= 12 && !strings.Contains(other, k) && strings.Contains(s, k) && strings.Count(s, k) > strings.Count(maskedOut()[where], k) {
				t.Fatalf("the preshared key %q shows up in the %s:\n%s", k, where, s)
			}
		}
	}
	if err != nil {
		var ie *importer.Error
		if errors.As(err, &ie) && (ie.Line < 1 || !strings.HasPrefix(err.Error(), "fuzz.txt:")) {
			t.Fatalf("error without FILE:LINE: %v", err)
		}
		leak("error", err.Error())
		return
	}
	text, err := res.TOML()
	if err != nil {
		t.Fatalf("TOML: %v", err)
	}
	leak("TOML", string(text))
	leak("notes", notesText(res))
	if _, err := model.Parse("fuzz.toml", text); err != nil {
		t.Fatalf("the TOML does not load: %v\n%s", err, text)
	}
}

// TestParseShapes: the shapes real scripts use give the same commands.
func TestParseShapes(t *testing.T) {
	want := `add filter [{filterlist Bob's list} {srcaddr me} {dstaddr 10.0.0.1} {protocol tcp}]`
	for _, script := range []string{
		`netsh ipsec static add filter filterlist="Bob's list" srcaddr=me dstaddr=10.0.0.1 protocol=tcp`,
		`NETSH -c "ipsec static" add filter filterlist = "Bob's list" srcaddr= me dstaddr =10.0.0.1 protocol=tcp`,
		"netsh ipsec static add filter ^\n   filterlist=\"Bob's list\" srcaddr=me \\\n dstaddr=10.0.0.1 protocol=tcp",
		"pushd ipsec static\n  add filter filterlist=\"Bob's list\" srcaddr=me dstaddr=10.0.0.1 protocol=tcp\npopd",
		"netsh\nipsec\nstatic\nadd filter filterlist=\"Bob's list\" srcaddr=me dstaddr=10.0.0.1 protocol=tcp",
		"@echo off\r\nrem a comment\r\n:: another\r\n# and another\r\n@netsh ipsec static add filter filterlist=\"Bob's list\" srcaddr=me dstaddr=10.0.0.1 protocol=tcp\r\n",
		"\ufeffipsec static add filter filterlist=\"Bob's list\" srcaddr=me dstaddr=10.0.0.1 protocol=tcp",
	} {
		cmds, err := importer.Parse("s.txt", []byte(script))
		if err != nil {
			t.Errorf("%q: %v", script, err)
			continue
		}
		if len(cmds) != 1 {
			t.Errorf("%q: %d commands, want 1: %+v", script, len(cmds), cmds)
			continue
		}
		c := cmds[0]
		var args []string
		for _, a := range c.Args {
			args = append(args, "{"+a.Tag+" "+a.Value+"}")
		}
		got := c.Verb + " " + c.Object + " [" + strings.Join(args, " ") + "]"
		if got != want || (c.Context != "ipsec static") {
			t.Errorf("%q:\n got %s (context %q)\nwant %s (context \"ipsec static\")", script, got, c.Context, want)
		}
	}
}

// TestParseErrors: each names the line the command starts on.
func TestParseErrors(t *testing.T) {
	for script, want := range map[string]string{
		"# ok\nnetsh ipsec static add policy name=\"x": "s.txt:2: a quote is not closed",
		"add policy name=a\n\nadd policy ^\n  =b":      `s.txt:3: a value (=...) without a parameter name`,
		"popd":                           "s.txt:1: popd without pushd",
		"netsh -f other.txt":             `s.txt:1: netsh -f runs the script "other.txt": import that script instead`,
		"netsh interface ip set address": `s.txt:1: "interface" commands`,
		"pushd ipsec bogus":              `s.txt:1: "bogus" is not a netsh context`,
		"add\x00":                        "s.txt:1: a NUL byte",
		"netsh ipsec static add policy name=a\nnetsh -r server1 add x": `s.txt:2: netsh -r "server1" configures another computer`,
	} {
		_, err := importer.Netsh("s.txt", []byte(script), importer.Options{Addresses: []string{"10.0.0.1"}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", script, err, want)
		}
	}
}

// TestNoKeyInErrors: an error on a line holding a psk never quotes it.
func TestNoKeyInErrors(t *testing.T) {
	const key = "Sup3r-secret-preshared-key"
	base := "add policy name=P assign=yes\nadd filterlist name=L\nadd filter filterlist=L srcaddr=me dstaddr=10.0.0.2\nadd filteraction name=A\n"
	for _, line := range []string{
		`add rule name=R policy=P filterlist=L filteraction=A psk=` + key + ` extra1 extra2 extra3 extra4 extra5`,
		`add rule R P L A 10.0.0.9 lan yes desc no ` + key + ` rootca toomany`,
		`add rule name=R policy=P filterlist=L filteraction=A psk="` + key,
		`add rule name=R policy=P filterlist=L filteraction=A psk=` + key + ` psk=` + key,
		`add rule name=R policy=P filterlist=L filteraction=A psk=` + key + ` activate=` + key,
		"add rule name=R policy=P filterlist=L filteraction=A\n    psk=" + key,
		"add rule name=R policy=P filterlist=L filteraction=A\n    \"" + key + "\"",
		`add rule name=R policy=P filterlist=L filteraction=A psk =` + key + ` =` + key,
		`add rule name=R policy=P filterlist=L filteraction=A psk = = ` + key,
	} {
		_, err := importer.Netsh("s.txt", []byte(base+line), importer.Options{Addresses: []string{"10.0.0.1"}})
		if err == nil {
			t.Errorf("%s: no error", line)
			continue
		}
		if strings.Contains(err.Error(), key) {
			t.Errorf("the key shows up in the error: %v", err)
		}
	}
}

// maskKey is another key of k's length: each letter and digit moved on by
// one (z to a, 9 to 0), anything else kept.
func maskKey(k string) string {
	b := []byte(k)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = 'a' + (c-'a'+1)%26
		case c >= 'A' && c <= 'Z':
			b[i] = 'A' + (c-'A'+1)%26
		case c >= '0' && c <= '9':
			b[i] = '0' + (c-'0'+1)%10
		}
	}
	return string(b)
}

// importerSays is what the importer says of data: its error, TOML and
// notes, by where fuzzOne looks.
func importerSays(imp func(string, []byte, importer.Options) (*importer.Result, error), data []byte, opts importer.Options) map[string]string {
	out := map[string]string{}
	res, err := imp("fuzz.txt", data, opts)
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	if text, err := res.TOML(); err == nil {
		out["TOML"] = string(text)
	}
	out["notes"] = notesText(res)
	return out
}

// notesText is the importer's notes, a line each.
func notesText(res *importer.Result) string {
	var notes strings.Builder
	for _, n := range res.Notes {
		notes.WriteString(n.String() + "\n")
	}
	return notes.String()
}
