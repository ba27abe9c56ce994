package lab_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// The NAT topology: alice behind the router, bob outside; the router
// masquerades alice; Open reads the topology back; Down removes the
// router's namespace too.
func TestIntegrationNATTopology(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: []string{"alice", "bob"}, Topology: lab.TopologyNAT})
	if l.Topology != lab.TopologyNAT || l.Router == nil {
		t.Fatalf("topology %q, router %v", l.Topology, l.Router)
	}
	alice, bob := l.Host("alice"), l.Host("bob")
	if alice.Addr.String() != "192.168.98.231" || bob.Addr.String() != "172.31.67.244" {
		t.Errorf("addresses alice %s, bob %s", alice.Addr, bob.Addr)
	}
	if !strings.Contains(netnsList(t), l.Router.Netns) {
		t.Errorf("no router namespace %s", l.Router.Netns)
	}
	out, err := exec.Command("ip", "netns", "exec", l.Router.Netns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "masquerade") {
		t.Errorf("router ruleset: %v\n%s", err, out)
	}

	// A TCP connection from alice reaches bob from the router's address.
	ln, err := bob.Listen("tcp", bob.Addr.String()+":7100")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		seen <- c.RemoteAddr().String()
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := alice.Dial(ctx, "tcp", bob.Addr.String()+":7100")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := <-seen; !strings.HasPrefix(got, l.Router.Outside.String()+":") {
		t.Errorf("bob saw alice's connection from %s, want the router's %s", got, l.Router.Outside)
	}
	// bob cannot reach alice's private address.
	if c, err := bob.Dial(ctx, "tcp", alice.Addr.String()+":7101"); err == nil {
		c.Close()
		t.Errorf("bob reached alice's private address")
	}

	o, err := lab.Open(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if o.Topology != lab.TopologyNAT || o.Router == nil || *o.Router != *l.Router {
		t.Errorf("Open: topology %q, router %+v; want %+v", o.Topology, o.Router, l.Router)
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(netnsList(t), l.Prefix+"-") {
		t.Errorf("namespaces left after Down:\n%s", netnsList(t))
	}
}

func TestIssueCerts(t *testing.T) {
	dir := t.TempDir()
	got, err := lab.IssueCerts(dir, lab.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range lab.DefaultCertHosts() {
		if got.Certs[h.Name] == "" || got.Keys[h.Name] == "" {
			t.Fatalf("no certificate or key for %s", h.Name)
		}
	}
	checkIssued(t, got)
}
