package vici_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

func logEvent(group, text string) *govici.Message {
	return msg("group", group, "level", "1", "ikesa-name", "alice-bob", "ikesa-uniqueid", "1", "msg", text)
}

func TestInitiateStreamsLog(t *testing.T) {
	srv, c := newClient(t)
	// Emit each line only after the client has printed the previous one:
	// proof that lines reach the callback while initiate is still running.
	printed := make(chan string)
	srv.Handle("initiate", func(r *vicitest.Request) *govici.Message {
		for _, line := range []string{"initiating IKE_SA alice-bob[1] to 172.31.67.244", "IKE_SA alice-bob[1] established", "CHILD_SA alice-bob{1} established"} {
			if !r.Event("control-log", logEvent("IKE", line)) {
				t.Error("client did not register for control-log")
			}
			select {
			case <-printed:
			case <-r.Gone():
				return nil
			}
		}
		return vicitest.OK()
	})
	var got []vici.LogLine
	err := c.Initiate(context.Background(), vici.InitiateRequest{IKE: "alice-bob", Child: "alice-bob"}, func(l vici.LogLine) {
		got = append(got, l)
		printed <- l.Message
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].String() != "[IKE] initiating IKE_SA alice-bob[1] to 172.31.67.244" ||
		got[0].Level != 1 || got[0].IKEName != "alice-bob" || got[0].IKEID != 1 {
		t.Errorf("log lines %+v", got)
	}
	req := srv.Received()[0].Message
	if req.Get("child") != "alice-bob" || req.Get("ike") != "alice-bob" || req.Get("timeout") != "30000" {
		t.Errorf("initiate request\n%v", req)
	}
}

func TestInitiateTimeouts(t *testing.T) {
	srv, c := newClient(t)
	timeout := func() int {
		t.Helper()
		r := srv.Received()
		ms, err := strconv.Atoi(r[len(r)-1].Message.Get("timeout").(string))
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	ctx := context.Background()
	if err := c.LoadConn(ctx, "x", msg("children", msg("x", msg()))); err != nil {
		t.Fatal(err)
	}
	if err := c.Initiate(ctx, vici.InitiateRequest{Child: "x", Timeout: 5 * time.Second}, nil); err != nil {
		t.Fatal(err)
	}
	if ms := timeout(); ms != 5000 {
		t.Errorf("timeout %d ms, want 5000", ms)
	}
	// charon's timeout must end before the context does.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Initiate(dctx, vici.InitiateRequest{Child: "x"}, nil); err != nil {
		t.Fatal(err)
	}
	if ms := timeout(); ms > 8000 || ms < 7000 {
		t.Errorf("with 10 s left: timeout %d ms, want about 8000", ms)
	}
	if err := c.Initiate(ctx, vici.InitiateRequest{}, nil); err == nil {
		t.Error("Initiate without a name succeeded")
	}
}

// logCase is one file of testdata/negotiation.
type logCase struct {
	name, errmsg, reason, peer, error string
	lines                             [][2]string // group, message
}

var logLineRE = regexp.MustCompile(`^\[(\w+)\] (.*)$`)

func readLogCase(t *testing.T, path string) logCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var c logCase
	header := true
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
		case header && line == "---":
			header = false
		case header:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("%s:%d: want key: value", path, n)
			}
			v = strings.TrimSpace(v)
			switch k {
			case "name":
				c.name = v
			case "errmsg":
				c.errmsg = v
			case "reason":
				c.reason = v
			case "peer":
				c.peer = v
			case "error":
				c.error = v
			default:
				t.Fatalf("%s:%d: unknown key %q", path, n, k)
			}
		default:
			m := logLineRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s:%d: want [GROUP] message", path, n)
			}
			c.lines = append(c.lines, [2]string{m[1], m[2]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if header || c.name == "" || c.errmsg == "" || c.reason == "" || c.error == "" {
		t.Fatalf("%s: incomplete header or no --- line", path)
	}
	return c
}

func TestInitiateFailures(t *testing.T) {
	files, err := filepath.Glob("testdata/negotiation/*.log")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	srv, c := newClient(t)
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".log"), func(t *testing.T) {
			tc := readLogCase(t, file)
			srv.Handle("initiate", func(r *vicitest.Request) *govici.Message {
				for _, l := range tc.lines {
					r.Event("control-log", msg("group", l[0], "level", "1", "msg", l[1]))
				}
				return vicitest.Failed("%s", tc.errmsg)
			})
			var streamed int
			err := c.Initiate(context.Background(), vici.InitiateRequest{Child: tc.name}, func(vici.LogLine) { streamed++ })
			var ne *vici.NegotiationError
			if !errors.As(err, &ne) {
				t.Fatalf("error %v (%T) is not a *NegotiationError", err, err)
			}
			if string(ne.Reason) != tc.reason {
				t.Errorf("reason %s, want %s (evidence %q)", ne.Reason, tc.reason, ne.Evidence)
			}
			if ne.Peer != tc.peer {
				t.Errorf("peer %q, want %q", ne.Peer, tc.peer)
			}
			if err.Error() != tc.error {
				t.Errorf("error\n got %s\nwant %s", err, tc.error)
			}
			if ne.Detail != tc.errmsg || len(ne.Log) != len(tc.lines) || streamed != len(tc.lines) {
				t.Errorf("detail %q, %d log lines kept, %d streamed; want %q, %d", ne.Detail, len(ne.Log), streamed, tc.errmsg, len(tc.lines))
			}
			var ce *vici.CommandError
			if !errors.As(err, &ce) || ce.Message != tc.errmsg {
				t.Errorf("does not wrap charon's CommandError: %v", err)
			}
		})
	}
}

func TestInitiateTransportErrorIsNotClassified(t *testing.T) {
	srv, c := newClient(t)
	srv.Handle("initiate", func(r *vicitest.Request) *govici.Message {
		r.Event("control-log", logEvent("IKE", "received AUTHENTICATION_FAILED notify error"))
		go srv.Disconnect()
		<-r.Gone()
		return nil
	})
	err := c.Initiate(context.Background(), vici.InitiateRequest{Child: "x"}, nil)
	var ne *vici.NegotiationError
	if errors.As(err, &ne) || !errors.Is(err, vici.ErrDisconnected) {
		t.Errorf("error %v: want ErrDisconnected, not a NegotiationError", err)
	}
}

func TestTerminate(t *testing.T) {
	srv, c := newClient(t)
	srv.SetSAs(ikeSA("alice-bob", 4, 1))
	ctx := context.Background()
	var lines []string
	srv.Handle("terminate", func(r *vicitest.Request) *govici.Message {
		r.Event("control-log", logEvent("IKE", "deleting IKE_SA alice-bob[4] between ..."))
		if r.Message.Get("ike-id") != "4" {
			return vicitest.Failed("no matching SAs to terminate found")
		}
		return msg("success", "yes", "matches", "1", "terminated", "1")
	})
	err := c.Terminate(ctx, vici.TerminateRequest{IKEID: 4, Force: true, Timeout: 2 * time.Second}, func(l vici.LogLine) {
		lines = append(lines, l.Message)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 {
		t.Errorf("log lines %q", lines)
	}
	req := srv.Received()[0].Message
	if want := msg("ike-id", "4", "force", "yes", "timeout", "2000"); req.String() != want.String() {
		t.Errorf("terminate request\n%v\nwant\n%v", req, want)
	}
	err = c.Terminate(ctx, vici.TerminateRequest{IKE: "nope"}, nil)
	if want := `terminate "nope": charon: no matching SAs to terminate found`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestRekey(t *testing.T) {
	srv, c := newClient(t)
	srv.SetSAs(ikeSA("alice-bob", 4, 1))
	ctx := context.Background()
	if err := c.Rekey(ctx, vici.RekeyRequest{IKE: "alice-bob", Reauth: true}); err != nil {
		t.Fatal(err)
	}
	if want := msg("ike", "alice-bob", "reauth", "yes"); srv.Received()[0].Message.String() != want.String() {
		t.Errorf("rekey request %v", srv.Received()[0].Message)
	}
	err := c.Rekey(ctx, vici.RekeyRequest{IKEID: 99})
	if want := `rekey "IKE_SA #99": charon: no matching SAs to rekey found`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
