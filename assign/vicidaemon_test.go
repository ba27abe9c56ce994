package assign

import (
	"context"
	"fmt"
	"slices"
	"testing"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// LiveSAs asks charon for the named connections' IKE_SAs one by one (up
// to liveSAsOneByOne), lists everything once for more and picks from it,
// lists everything for nil, and asks nothing for none.
func TestLiveSAsAsksForTheNamedConnections(t *testing.T) {
	srv := vicitest.NewServer(t)
	var sas []string
	var msgs []*govici.Message
	for i := range 20 {
		name := fmt.Sprintf("sm-peer-%d", i)
		sas = append(sas, name)
		msgs = append(msgs, ikeSA(name, i+1))
	}
	srv.SetSAs(msgs...)
	ctx := context.Background()
	c, err := vici.Dial(ctx, srv.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := ViciDaemon{Client: c}
	for _, tc := range []struct {
		conns    []string
		want     []string
		requests []string // the ike selector of each list-sas
	}{
		{conns: []string{"sm-peer-3"}, want: []string{"sm-peer-3"}, requests: []string{"sm-peer-3"}},
		{conns: []string{"sm-peer-1", "sm-peer-7", "gone"}, want: []string{"sm-peer-1", "sm-peer-7"}, requests: []string{"sm-peer-1", "sm-peer-7", "gone"}},
		{conns: append(slices.Clone(sas[:liveSAsOneByOne]), "sm-peer-19"), want: append(slices.Clone(sas[:liveSAsOneByOne]), "sm-peer-19"), requests: []string{""}},
		{conns: nil, want: sas, requests: []string{""}},
		{conns: []string{}, want: nil, requests: nil},
	} {
		before := len(srv.Received())
		got, err := d.LiveSAs(ctx, tc.conns)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, sa := range got {
			names = append(names, sa.Conn)
		}
		var asked []string
		for _, r := range srv.Received()[before:] {
			if r.Command == "list-sas" {
				ike, _ := r.Message.Get("ike").(string)
				asked = append(asked, ike)
			}
		}
		if !slices.Equal(names, tc.want) || !slices.Equal(asked, tc.requests) {
			t.Errorf("LiveSAs(%v): got %v asking %q; want %v asking %q", tc.conns, names, asked, tc.want, tc.requests)
		}
	}
}

// ikeSA is the list-sa body of an IKE_SA of connection name with one
// CHILD_SA.
func ikeSA(name string, id int) *govici.Message {
	return vicitest.Msg(name, vicitest.Msg("uniqueid", fmt.Sprint(id), "state", "ESTABLISHED",
		"child-sas", vicitest.Msg(name+"-1-1", vicitest.Msg("name", name+"-1", "uniqueid", fmt.Sprint(100+id), "state", "INSTALLED"))))
}
