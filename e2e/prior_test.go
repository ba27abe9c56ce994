package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// The connections an apply rendered are kept beside the record
// (.rendered, render.Prior) and taken back by the next apply for what did
// not change. Against a real charon: a changed port, a changed endpoint
// identity (which every connection has) and a damaged file each load
// into charon what the policy now says, and the file never holds the
// preshared key.
func TestRenderedKeptAcrossApplies(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Kernel, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	listConns := func() string {
		t.Helper()
		out, err := l.Host("alice").Swanctl(ctx, "--list-conns").CombinedOutput()
		if err != nil {
			t.Fatalf("swanctl --list-conns: %v\n%s", err, out)
		}
		return string(out)
	}
	policy := func(id string, ports ...int) string {
		var b strings.Builder
		b.WriteString("assign = \"P\"\n[endpoint]\naddresses = [\"172.16.98.231\"]\n")
		if id != "" {
			fmt.Fprintf(&b, "id = %q\n", id)
		}
		b.WriteString("[[filter_action]]\nname = \"E\"\naction = \"negotiate\"\n")
		for i, p := range ports {
			fmt.Fprintf(&b, "[[filter_list]]\nname = \"L%d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"172.20.0.%d\"\n  protocol = \"tcp\"\n  destination_port = %d\n", i, 10+i, p)
		}
		b.WriteString("[[policy]]\nname = \"P\"\n")
		for i := range ports {
			fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"R%d\"\n  filter_list = \"L%d\"\n  filter_action = \"E\"\n  authentication = [ { method = \"psk\", secret_file = \"alice-bob/alice-bob.psk\" } ]\n", i, i)
		}
		return b.String()
	}
	file := l.writeFile("kept.toml", policy("", 40001, 40002, 40003), 0o644)
	psk, err := os.ReadFile(l.example("alice-bob/alice-bob.psk"))
	if err != nil {
		t.Fatal(err)
	}
	psk = bytes.TrimSpace(psk)

	l.mustApply("alice", file)
	kept, _ := filepath.Glob(filepath.Join(l.stateDir, "*.rendered"))
	if len(kept) != 1 {
		t.Fatalf("state folder: %v rendered-connections files, want 1", kept)
	}
	st, err := os.Stat(kept[0])
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", kept[0], st, err)
	}
	if data, _ := os.ReadFile(kept[0]); bytes.Contains(data, psk) {
		t.Fatal("the kept connections hold the preshared key")
	}

	// One port: that connection changes, in charon too; the others are
	// taken as they were.
	l.writeFile("kept.toml", policy("", 40001, 50002, 40003), 0o644)
	if r := l.mustApply("alice", file); !strings.Contains(r.stdout, "0 added, 1 changed, 0 removed, 2 unchanged") {
		t.Fatalf("one port changed: %s", r)
	}
	if c := listConns(); !strings.Contains(c, "[tcp/50002]") || strings.Contains(c, "[tcp/40002]") || !strings.Contains(c, "[tcp/40003]") {
		t.Fatalf("charon after the port changed:\n%s", c)
	}

	// The endpoint's identity is in every connection: none is taken.
	l.writeFile("kept.toml", policy("alice.example", 40001, 50002, 40003), 0o644)
	if r := l.mustApply("alice", file); !strings.Contains(r.stdout, "0 added, 3 changed, 0 removed, 0 unchanged") {
		t.Fatalf("the endpoint's identity changed: %s", r)
	}
	if c := listConns(); strings.Count(c, "alice.example") != 3 {
		t.Fatalf("charon after the identity changed, want it in 3 connections:\n%s", c)
	}

	// A damaged file is as none: everything is rendered, and the file
	// is made again.
	data, err := os.ReadFile(kept[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept[0], data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	l.writeFile("kept.toml", policy("alice.example", 40001, 40002, 40003), 0o644)
	if r := l.mustApply("alice", file); !strings.Contains(r.stdout, "0 added, 1 changed, 0 removed, 2 unchanged") {
		t.Fatalf("the port back, the kept file damaged: %s", r)
	}
	if c := listConns(); !strings.Contains(c, "[tcp/40002]") || strings.Contains(c, "50002") {
		t.Fatalf("charon after the port went back:\n%s", c)
	}
	if again, err := os.ReadFile(kept[0]); err != nil || len(again) <= len(data)/2 {
		t.Fatalf("the damaged file was not made again: %d bytes, %v", len(again), err)
	}
	if r := l.mustApply("alice", file); !strings.Contains(r.stdout, "nothing to do") && !strings.Contains(r.stdout, "0 added, 0 changed, 0 removed, 3 unchanged") {
		t.Fatalf("the same policy again: %s", r)
	}
}
