package vici_test

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/vici"
)

// ikeSA is a list-sa event body for an IKE_SA named name with the given
// number of CHILD_SAs, shaped like charon 5.9.8's.
func ikeSA(name string, id, children int) *govici.Message {
	childSAs := govici.NewMessage()
	for i := range children {
		cid := id*100000 + i + 1
		childSAs.Set(fmt.Sprintf("%s-net-%d", name, cid), msg(
			"name", name+"-net", "uniqueid", strconv.Itoa(cid), "reqid", strconv.Itoa(i+1),
			"state", "INSTALLED", "mode", "TUNNEL", "protocol", "ESP", "encap", "yes",
			"spi-in", "c1a2b3c4", "spi-out", "d4c3b2a1",
			"encr-alg", "AES_GCM_16", "encr-keysize", "256",
			"bytes-in", "1234", "packets-in", "10", "use-in", "3",
			"bytes-out", "4321", "packets-out", "11",
			"rekey-time", "3000", "life-time", "3400", "install-time", "200",
			"local-ts", []string{"172.16.98.231/32[tcp/6667]"},
			"remote-ts", []string{"172.31.67.244/32[tcp]"},
		))
	}
	return msg(name, msg(
		"uniqueid", strconv.Itoa(id), "version", "2", "state", "ESTABLISHED",
		"local-host", "172.16.98.231", "local-port", "4500", "local-id", "172.16.98.231",
		"remote-host", "172.31.67.244", "remote-port", "4500", "remote-id", "172.31.67.244",
		"initiator", "yes", "initiator-spi", "0011223344556677", "responder-spi", "8899aabbccddeeff",
		"nat-remote", "yes", "nat-any", "yes",
		"encr-alg", "AES_CBC", "encr-keysize", "128", "integ-alg", "HMAC_SHA2_256_128",
		"prf-alg", "PRF_HMAC_SHA2_256", "dh-group", "CURVE_25519",
		"established", "42", "rekey-time", "13000",
		"child-sas", childSAs,
	))
}

func TestListSAsParsesFields(t *testing.T) {
	srv, c := newClient(t)
	srv.SetSAs(ikeSA("alice-bob", 7, 1))
	sas, err := c.ListSAs(context.Background(), vici.SAFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []vici.IKESA{{
		Name: "alice-bob", UniqueID: 7, Version: 2, State: "ESTABLISHED",
		LocalHost: "172.16.98.231", LocalPort: 4500, LocalID: "172.16.98.231",
		RemoteHost: "172.31.67.244", RemotePort: 4500, RemoteID: "172.31.67.244",
		Initiator: true, InitiatorSPI: "0011223344556677", ResponderSPI: "8899aabbccddeeff",
		NATRemote: true, NATAny: true,
		EncrAlg: "AES_CBC", EncrKeysize: 128, IntegAlg: "HMAC_SHA2_256_128",
		PRFAlg: "PRF_HMAC_SHA2_256", DHGroup: "CURVE_25519",
		Established: 42 * time.Second, RekeyTime: 13000 * time.Second,
		Children: []vici.ChildSA{{
			Name: "alice-bob-net", Key: "alice-bob-net-700001", UniqueID: 700001, ReqID: 1,
			State: "INSTALLED", Mode: "TUNNEL", Protocol: "ESP", Encap: true,
			SPIIn: "c1a2b3c4", SPIOut: "d4c3b2a1", EncrAlg: "AES_GCM_16", EncrKeysize: 256,
			BytesIn: 1234, PacketsIn: 10, UseIn: 3 * time.Second, BytesOut: 4321, PacketsOut: 11,
			RekeyTime: 3000 * time.Second, LifeTime: 3400 * time.Second, InstallTime: 200 * time.Second,
			LocalTS: []string{"172.16.98.231/32[tcp/6667]"}, RemoteTS: []string{"172.31.67.244/32[tcp]"},
		}},
	}}
	if !reflect.DeepEqual(sas, want) {
		t.Errorf("ListSAs() =\n%+v\nwant\n%+v", sas, want)
	}
}

func TestListSAsRequest(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()
	if _, err := c.ListSAs(ctx, vici.SAFilter{IKE: "a", IKEID: 3, Child: "b", ChildID: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSAs(ctx, vici.SAFilter{NoBlock: true}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []*govici.Message{
		msg("ike", "a", "child", "b", "ike-id", "3", "child-id", "9"),
		msg("noblock", "yes"),
	} {
		if got := srv.Received()[i].Message; got.String() != want.String() {
			t.Errorf("list-sas request\n%v\nwant\n%v", got, want)
		}
	}
}

// govici's CallStreaming drops events beyond 128 in a burst; ListSAs must not.
func TestListSAsLosesNothing(t *testing.T) {
	for _, n := range []int{1000, 5000} {
		t.Run(strconv.Itoa(n)+" IKE_SAs", func(t *testing.T) {
			srv, c := newClient(t)
			sas := make([]*govici.Message, n)
			for i := range sas {
				sas[i] = ikeSA(fmt.Sprintf("conn%05d", i), i+1, 1)
			}
			srv.SetSAs(sas...)
			got, err := c.ListSAs(context.Background(), vici.SAFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("listed %d IKE_SAs, want %d", len(got), n)
			}
			for i, sa := range got {
				if want := fmt.Sprintf("conn%05d", i); sa.Name != want || len(sa.Children) != 1 {
					t.Fatalf("IKE_SA %d is %s with %d children, want %s in order", i, sa.Name, len(sa.Children), want)
				}
			}
			// And the Client still works afterwards.
			if _, err := c.Conns(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("1000 CHILD_SAs", func(t *testing.T) {
		srv, c := newClient(t)
		srv.SetSAs(ikeSA("big", 1, 1000))
		got, err := c.ListSAs(context.Background(), vici.SAFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || len(got[0].Children) != 1000 {
			t.Fatalf("listed %d IKE_SAs", len(got))
		}
		for i, ch := range got[0].Children {
			if ch.UniqueID != uint64(100000+i+1) || ch.Name != "big-net" {
				t.Fatalf("child %d = %s #%d", i, ch.Name, ch.UniqueID)
			}
		}
	})
}

func TestListSAsBadNumber(t *testing.T) {
	srv, c := newClient(t)
	srv.SetSAs(msg("x", msg("uniqueid", "one")))
	_, err := c.ListSAs(context.Background(), vici.SAFilter{})
	if want := `list-sas: IKE_SA "x": uniqueid: invalid number "one"`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestListConns(t *testing.T) {
	_, c := newClient(t)
	ctx := context.Background()
	body := msg("version", "2", "local_addrs", []string{"172.16.98.231"}, "remote_addrs", []string{"172.31.67.244"},
		"local", msg("auth", "psk", "id", "alice"), "remote", msg("auth", "psk"),
		"children", msg("net", msg("mode", "tunnel", "local_ts", []string{"172.16.98.231/32"}, "remote_ts", []string{"172.31.67.244/32"})))
	for i := range 300 {
		if err := c.LoadConn(ctx, fmt.Sprintf("c%03d", i), body); err != nil {
			t.Fatal(err)
		}
	}
	conns, err := c.ListConns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 300 {
		t.Fatalf("listed %d connections, want 300", len(conns))
	}
	want := vici.ConnInfo{
		Name: "c299", LocalAddrs: []string{"172.16.98.231"}, RemoteAddrs: []string{"172.31.67.244"},
		Version: "IKEv2", RekeyTime: 14400 * time.Second, Unique: "UNIQUE_NO",
		Local:  []vici.AuthInfo{{Class: "pre-shared key", ID: "alice"}},
		Remote: []vici.AuthInfo{{Class: "pre-shared key"}},
		Children: []vici.ChildConnInfo{{Name: "net", Mode: "TUNNEL", RekeyTime: time.Hour,
			DPDAction: "clear", CloseAction: "clear",
			LocalTS: []string{"172.16.98.231/32"}, RemoteTS: []string{"172.31.67.244/32"}}},
	}
	if !reflect.DeepEqual(conns[299], want) {
		t.Errorf("ListConns()[299] =\n%+v\nwant\n%+v", conns[299], want)
	}
}
