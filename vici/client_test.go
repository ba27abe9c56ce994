package vici_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

var msg = vicitest.Msg

// newClient starts a fake charon and dials it.
func newClient(t *testing.T, opts ...vici.Option) (*vicitest.Server, *vici.Client) {
	t.Helper()
	srv := vicitest.NewServer(t)
	c, err := vici.Dial(context.Background(), srv.Socket(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vicit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestDialMissingSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "charon.vici")
	for _, socket := range []string{path, "unix://" + path} {
		_, err := vici.Dial(context.Background(), socket)
		if err == nil {
			t.Fatalf("Dial(%q) succeeded", socket)
		}
		want := "cannot reach charon at " + path + ": is it running? (connect: no such file or directory)"
		if err.Error() != want {
			t.Errorf("Dial(%q) error\n got %q\nwant %q", socket, err, want)
		}
		if !errors.Is(err, vici.ErrUnreachable) {
			t.Errorf("Dial(%q) error %v does not match ErrUnreachable", socket, err)
		}
	}
}

func TestDialRefusingSocket(t *testing.T) {
	// A file that is not a listening socket refuses connections.
	path := filepath.Join(shortDir(t), "charon.vici")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := vici.Dial(context.Background(), path)
	want := "cannot reach charon at " + path + ": is it running? (connect: connection refused)"
	if err == nil || err.Error() != want {
		t.Errorf("error\n got %v\nwant %s", err, want)
	}
	if !errors.Is(err, vici.ErrUnreachable) {
		t.Errorf("error %v does not match ErrUnreachable", err)
	}
}

func TestDialSocketNames(t *testing.T) {
	_, err := vici.Dial(context.Background(), "tcp://127.0.0.1:4502")
	if err == nil || !strings.Contains(err.Error(), "only unix sockets") {
		t.Errorf("tcp:// socket: got %v", err)
	}
	srv := vicitest.NewServer(t)
	c, err := vici.Dial(context.Background(), "unix://"+srv.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Socket() != srv.Socket() {
		t.Errorf("Socket() = %q, want %q", c.Socket(), srv.Socket())
	}
}

func TestDefaultSocket(t *testing.T) {
	if _, err := os.Stat(vici.DefaultSocket); err == nil {
		t.Skip("a charon is listening on the default socket here")
	}
	_, err := vici.Dial(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "cannot reach charon at "+vici.DefaultSocket+": ") {
		t.Errorf("Dial(\"\") error %v does not name %s", err, vici.DefaultSocket)
	}
}

func TestLoadConnSendsBody(t *testing.T) {
	srv, c := newClient(t)
	body := msg("version", "2", "local_addrs", []string{"172.16.98.231"},
		"children", msg("net", msg("local_ts", []string{"172.16.98.231/32[tcp/6667]"})))
	if err := c.LoadConn(context.Background(), "alice-bob", body); err != nil {
		t.Fatal(err)
	}
	got := srv.Received()
	if len(got) != 1 || got[0].Command != "load-conn" {
		t.Fatalf("received %v", srv.Commands())
	}
	if keys := got[0].Message.Keys(); !slices.Equal(keys, []string{"alice-bob"}) {
		t.Fatalf("load-conn keys %v, want [alice-bob]", keys)
	}
	sent, _ := got[0].Message.Get("alice-bob").(*govici.Message)
	if sent == nil || sent.String() != body.String() {
		t.Errorf("sent body\n%v\nwant\n%v", sent, body)
	}
	names, err := c.Conns(context.Background())
	if err != nil || !slices.Equal(names, []string{"alice-bob"}) {
		t.Errorf("Conns() = %v, %v", names, err)
	}
	if err := c.UnloadConn(context.Background(), "alice-bob"); err != nil {
		t.Fatal(err)
	}
	names, err = c.Conns(context.Background())
	if err != nil || len(names) != 0 {
		t.Errorf("Conns() after unload = %v, %v", names, err)
	}
}

func TestCommandError(t *testing.T) {
	srv, c := newClient(t)
	srv.Handle("load-conn", func(*vicitest.Request) *govici.Message {
		return vicitest.Failed("unknown option: bogus, config discarded")
	})
	err := c.LoadConn(context.Background(), "x", msg("bogus", "1"))
	var ce *vici.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CommandError", err, err)
	}
	if ce.Command != "load-conn" || ce.Name != "x" || ce.Message != "unknown option: bogus, config discarded" {
		t.Errorf("CommandError = %+v", ce)
	}
	if want := `load-conn "x": charon: unknown option: bogus, config discarded`; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	if errors.Is(err, vici.ErrDisconnected) || errors.Is(err, vici.ErrUnsupported) {
		t.Errorf("a refusal matches a transport sentinel: %v", err)
	}

	// The session survives a refusal.
	err = c.UnloadConn(context.Background(), "nope")
	if want := `unload-conn "nope": charon: unload: connection 'nope' not found`; err == nil || err.Error() != want {
		t.Errorf("UnloadConn error %v, want %s", err, want)
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	const secret = "s3cr3t-psk-value"
	srv, c := newClient(t)
	srv.Handle("load-shared", func(*vicitest.Request) *govici.Message {
		return vicitest.Failed("invalid shared key type: BOGUS")
	})
	err := c.LoadShared(context.Background(), "psk-alice-bob", "BOGUS", []byte(secret), []string{"172.16.98.231"})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("LoadShared error %q (must exist, must not hold the secret)", err)
	}
	if want := `load-shared "psk-alice-bob": charon: invalid shared key type: BOGUS`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	// A transport failure in the middle: the peer goes away instead of answering.
	release := make(chan struct{})
	srv.Handle("load-key", func(r *vicitest.Request) *govici.Message {
		close(release)
		<-r.Gone()
		return nil
	})
	go func() { <-release; srv.Disconnect() }()
	_, err = c.LoadKey(context.Background(), "any", []byte(secret))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("LoadKey error %q (must exist, must not hold the secret)", err)
	}
	if !errors.Is(err, vici.ErrDisconnected) {
		t.Errorf("LoadKey error %v does not match ErrDisconnected", err)
	}

	// Too big to send: the error names the key, not the value.
	big := strings.Repeat(secret, 70000/len(secret)+1)
	err = c.LoadShared(context.Background(), "big", "IKE", []byte(big), nil)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), `"data"`) {
		t.Errorf("oversized LoadShared error %q", err)
	}
}

func TestCredentials(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()
	if err := c.LoadShared(ctx, "psk-1", "IKE", []byte("key"), []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	got, ok := srv.Shared("psk-1")
	if !ok || got.Type != "IKE" || got.Data != "key" || !slices.Equal(got.Owners, []string{"a", "b"}) {
		t.Errorf("charon got %+v, %v", got, ok)
	}
	ids, err := c.SharedIDs(ctx)
	if err != nil || !slices.Equal(ids, []string{"psk-1"}) {
		t.Errorf("SharedIDs() = %v, %v", ids, err)
	}
	if err := c.UnloadShared(ctx, "psk-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadShared(ctx, "", "IKE", []byte("key"), nil); err == nil {
		t.Error("LoadShared without an id succeeded")
	}

	id, err := c.LoadKey(ctx, "any", []byte("-----BEGIN PRIVATE KEY-----"))
	if err != nil || len(id) != 40 {
		t.Fatalf("LoadKey() = %q, %v", id, err)
	}
	keys, err := c.Keys(ctx)
	if err != nil || !slices.Equal(keys, []string{id}) {
		t.Errorf("Keys() = %v, %v", keys, err)
	}
	if err := c.UnloadKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadCert(ctx, "X509", "CA", []byte("-----BEGIN CERTIFICATE-----")); err != nil {
		t.Fatal(err)
	}
	if certs := srv.Certs(); len(certs) != 1 || certs[0].Flag != "CA" || certs[0].Type != "X509" {
		t.Errorf("certs %+v", certs)
	}
}

func TestVersionAndStats(t *testing.T) {
	_, c := newClient(t)
	v, err := c.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.Daemon != "charon" || v.Version != "5.9.8" || v.Machine != "x86_64" {
		t.Errorf("Version() = %+v", v)
	}
	s, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := vici.Stats{
		UptimeRunning: "5 minutes", UptimeSince: "Jan 01 00:00:00 2025",
		WorkersTotal: 16, WorkersIdle: 11, WorkersActive: vici.Priorities{Critical: 4, Medium: 1},
		Scheduled: 3,
		Plugins:   []string{"charon", "random", "nonce", "openssl", "kernel-netlink", "socket-default", "vici"},
	}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("Stats() =\n%+v\nwant\n%+v", s, want)
	}
}

func TestCounters(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()

	// charon without the counters plugin refuses.
	_, err := c.Counters(ctx)
	if !errors.Is(err, vici.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("without plugin: %v does not match ErrUnsupported", err)
	}
	var ce *vici.CommandError
	if !errors.As(err, &ce) {
		t.Errorf("without plugin: %v is not a *CommandError", err)
	}

	// An older charon does not know the command at all.
	srv.Handle("get-counters", nil)
	_, err = c.Counters(ctx)
	if !errors.Is(err, vici.ErrUnsupported) {
		t.Errorf("unknown command: %v does not match ErrUnsupported", err)
	}
	if want := "get-counters: charon: unknown command"; err == nil || err.Error() != want {
		t.Errorf("unknown command: error %v, want %s", err, want)
	}
	// CMD_UNKNOWN leaves the session usable.
	if _, err := c.Version(ctx); err != nil {
		t.Fatal(err)
	}

	srv.Handle("get-counters", func(r *vicitest.Request) *govici.Message {
		name, _ := r.Message.Get("name").(string)
		return msg("counters", msg(name, msg("ike-rekey-init", "3", "invalid", "0")), "success", "yes")
	})
	got, err := c.Counters(ctx)
	if err != nil || got["ike-rekey-init"] != 3 || len(got) != 2 {
		t.Errorf("Counters() = %v, %v", got, err)
	}
	got, err = c.ConnCounters(ctx, "alice-bob")
	if err != nil || got["ike-rekey-init"] != 3 {
		t.Errorf("ConnCounters() = %v, %v", got, err)
	}
}

func TestCounts(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv, c := newClient(t, vici.WithObserver(func(cmd string) {
		mu.Lock()
		seen = append(seen, cmd)
		mu.Unlock()
	}))
	ctx := context.Background()
	if n := c.Counts()["load-conn"]; n != 0 {
		t.Errorf("load-conn count %d before any command", n)
	}
	if _, err := c.Conns(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := c.LoadConn(ctx, name, msg("version", "2")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ListSAs(ctx, vici.SAFilter{}); err != nil {
		t.Fatal(err)
	}
	_ = c.UnloadConn(ctx, "nope") // refused, still counted

	want := map[string]int{"get-conns": 1, "load-conn": 2, "list-sas": 1, "unload-conn": 1}
	if got := c.Counts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Counts() = %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if wantSeen := []string{"get-conns", "load-conn", "load-conn", "list-sas", "unload-conn"}; !slices.Equal(seen, wantSeen) {
		t.Errorf("observer saw %v, want %v", seen, wantSeen)
	}
	if !slices.Equal(srv.Commands(), seen) {
		t.Errorf("charon received %v, observer saw %v", srv.Commands(), seen)
	}
}

func TestOversizedRequestIsNotSent(t *testing.T) {
	srv, c := newClient(t)
	body := govici.NewMessage()
	for i := range 10 {
		body.Set(fmt.Sprintf("cert%d", i), []string{strings.Repeat("x", 60000)})
	}
	err := c.LoadConn(context.Background(), "huge", body)
	if err == nil || !strings.Contains(err.Error(), `load-conn "huge": request is`) ||
		!strings.Contains(err.Error(), "charon accepts at most 524288") {
		t.Errorf("error %v", err)
	}
	if n := srv.Count("load-conn"); n != 0 {
		t.Errorf("charon received %d load-conn", n)
	}
	if n := c.Counts()["load-conn"]; n != 0 {
		t.Errorf("counted %d load-conn", n)
	}
}

func TestTimeoutKeepsClientUsable(t *testing.T) {
	srv, c := newClient(t)
	release := make(chan struct{})
	defer close(release)
	srv.Handle("version", func(r *vicitest.Request) *govici.Message {
		select {
		case <-release:
		case <-r.Gone():
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Version(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Version() error %v, want a deadline error", err)
	}
	// The next command runs on a fresh session.
	if _, err := c.Conns(context.Background()); err != nil {
		t.Fatalf("after a timeout: %v", err)
	}
}

func TestDefaultDeadline(t *testing.T) {
	srv, c := newClient(t, vici.WithCommandTimeout(50*time.Millisecond))
	srv.Handle("stats", func(r *vicitest.Request) *govici.Message {
		<-r.Gone()
		return nil
	})
	_, err := c.Stats(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stats: no answer from charon within 50ms") {
		t.Errorf("Stats() error %v", err)
	}
}

func TestReconnectAfterRestart(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()
	if _, err := c.Version(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Disconnect() // charon restarted
	// A read-only command notices the dead session (or retries once).
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("Version after restart: %v", err)
	}
	if err := c.LoadConn(ctx, "a", msg("version", "2")); err != nil {
		t.Fatalf("LoadConn after restart: %v", err)
	}
}

func TestDaemonGoneForGood(t *testing.T) {
	srv, c := newClient(t)
	srv.Close()
	_, err := c.Conns(context.Background())
	if !errors.Is(err, vici.ErrUnreachable) && !errors.Is(err, vici.ErrDisconnected) {
		t.Errorf("error %v matches neither ErrUnreachable nor ErrDisconnected", err)
	}
	if err == nil || !strings.HasPrefix(err.Error(), "get-conns: ") {
		t.Errorf("error %v does not name the command", err)
	}
}

func TestClose(t *testing.T) {
	_, c := newClient(t)
	events, err := c.Watch(context.Background(), "ike-updown")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range events {
		t.Error("event after Close")
	}
	if _, err := c.Conns(context.Background()); !errors.Is(err, vici.ErrClosed) {
		t.Errorf("Conns after Close: %v", err)
	}
	if _, err := c.ListSAs(context.Background(), vici.SAFilter{}); !errors.Is(err, vici.ErrClosed) {
		t.Errorf("ListSAs after Close: %v", err)
	}
}

func TestConcurrentCommands(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()
	srv.SetSAs(ikeSA("x", 1, 3))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.LoadConn(ctx, fmt.Sprintf("c%02d", i), msg("version", "2")); err != nil {
				errs <- err
			}
			if i%4 == 0 {
				sas, err := c.ListSAs(ctx, vici.SAFilter{})
				if err != nil {
					errs <- err
				} else if len(sas) != 1 || len(sas[0].Children) != 3 {
					errs <- fmt.Errorf("ListSAs: %d SAs", len(sas))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(srv.ConnNames()); n != 16 {
		t.Errorf("%d connections loaded, want 16", n)
	}
}

func TestListPoliciesOfOneChild(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()
	body := msg("version", "2", "children", msg(
		"web", msg("start_action", "trap", "mode", "transport"),
		"ssh", msg("start_action", "trap")))
	if err := c.LoadConn(ctx, "alice-bob", body); err != nil {
		t.Fatal(err)
	}
	all, err := c.ListPolicies(ctx, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("ListPolicies(\"\") = %+v, %v; want both children", all, err)
	}
	one, err := c.ListPolicies(ctx, "ssh")
	if err != nil || len(one) != 1 || one[0].Child != "ssh" || one[0].IKE != "alice-bob" || one[0].Mode != "TUNNEL" {
		t.Fatalf("ListPolicies(\"ssh\") = %+v, %v", one, err)
	}
	got := srv.Received()
	last := got[len(got)-1]
	if last.Command != "list-policies" || last.Message.Get("child") != "ssh" || last.Message.Get("trap") != "yes" {
		t.Errorf("last request %s %v, want list-policies with child = ssh and trap = yes", last.Command, last.Message)
	}
}
