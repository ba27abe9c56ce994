package lab

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.conf from the current output")

func TestStrongswanConf(t *testing.T) {
	for _, b := range []Backend{Libipsec, Kernel} {
		t.Run(string(b), func(t *testing.T) {
			got := strongswanConf(b, "alice", "/lab/alice/charon.vici", "/lab/alice/charon.log", false)
			golden := filepath.Join("testdata", "strongswan-"+string(b)+".conf")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("strongswan.conf differs from %s (run go test -update to accept):\n%s", golden, got)
			}
		})
	}
}

func TestStrongswanConfVerbose(t *testing.T) {
	quiet := strongswanConf(Libipsec, "alice", "/s", "/l", false)
	verbose := strongswanConf(Libipsec, "alice", "/s", "/l", true)
	if want := strings.Replace(quiet, "\t\t\tike = 2\n", "\t\t\tike = 2\n\t\t\tcfg = 2\n", 1); verbose != want {
		t.Errorf("verbose adds more than cfg = 2:\n%s", verbose)
	}
}

func TestPlugins(t *testing.T) {
	has := func(ps []string, p string) bool {
		for _, x := range ps {
			if x == p {
				return true
			}
		}
		return false
	}
	if p := plugins(Libipsec); !has(p, "kernel-libipsec") || !has(p, "kernel-netlink") {
		t.Errorf("libipsec plugins: %v", p)
	}
	if p := plugins(Kernel); has(p, "kernel-libipsec") || !has(p, "kernel-netlink") {
		t.Errorf("kernel plugins: %v", p)
	}
	// Every plugin must ship with Debian's packages; where they are
	// installed, check the file.
	if _, err := os.Stat("/usr/lib/ipsec/plugins"); err == nil {
		for _, p := range plugins(Libipsec) {
			if _, err := os.Stat("/usr/lib/ipsec/plugins/libstrongswan-" + p + ".so"); err != nil {
				t.Errorf("plugin %s: %v", p, err)
			}
		}
	}
}

func TestNewLab(t *testing.T) {
	l, err := newLab(Options{Dir: "/srv/lab"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Backend != Libipsec || l.Prefix != DefaultPrefix || l.Switch != "swl-switch" || len(l.Hosts) != 3 {
		t.Errorf("defaults: %+v", l)
	}
	h := l.Host("bob")
	if h.Netns != "swl-bob" || h.Addr.String() != "172.31.67.244" || h.Socket != "/srv/lab/bob/charon.vici" ||
		h.Conf != "/srv/lab/bob/strongswan.conf" || h.Log != "/srv/lab/bob/charon.log" || h.Iface != "eth0" {
		t.Errorf("bob: %+v", h)
	}
	if l, _ := newLab(Options{}); l == nil || l.Dir != DefaultDir {
		t.Errorf("default dir: %+v", l)
	}
	l, err = newLab(Options{Dir: "/srv/lab", Hosts: []string{"carol", "alice", "dave"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"carol": "172.24.0.10", "alice": "172.16.98.231", "dave": "172.24.0.11"} {
		if got := l.Host(name).Addr.String(); got != addr || !l.Segment.Contains(l.Host(name).Addr) {
			t.Errorf("%s at %s, want %s", name, got, addr)
		}
	}

	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Dir: "/run/lab"}, "under /run"},
		{Options{Dir: "/var/run/x"}, "under /run"},
		{Options{Dir: "/srv/lab", Backend: "xfrm"}, `unknown backend "xfrm"`},
		{Options{Dir: "/srv/lab", Prefix: "Bad-Prefix"}, `prefix "Bad-Prefix"`},
		{Options{Dir: "/srv/lab", Hosts: []string{"switch"}}, `host name "switch"`},
		{Options{Dir: "/srv/lab", Hosts: []string{"averyveryverylonghost"}}, "host name"},
		{Options{Dir: "/srv/lab", Hosts: []string{"alice", "alice"}}, `host "alice" twice`},
		{Options{Dir: "/srv/lab", Hosts: []string{}}, "no hosts"},
		{Options{Dir: "/" + strings.Repeat("d", 100)}, "longer than 107 bytes"},
	} {
		if _, err := newLab(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("newLab(%+v) = %v, want error with %q", c.o, err, c.want)
		}
	}
}

func TestOpenNotUp(t *testing.T) {
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNotUp) {
		t.Errorf("Open of an empty folder: %v, want ErrNotUp", err)
	}
}
