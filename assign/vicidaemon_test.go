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

// LiveSAs asks charon one question per query (up to liveSAsOneByOne):
// for a connection's IKE_SAs, or for one child's CHILD_SAs of them (two
// children of one IKE_SA come back as one IKE_SA); more queries are
// answered from one listing of everything, picked the same way; nil lists
// everything, and no query asks nothing.
func TestLiveSAsAsksForWhatIsQueried(t *testing.T) {
	srv := vicitest.NewServer(t)
	var names []string
	var msgs []*govici.Message
	for i := range 20 {
		name := fmt.Sprintf("sm-peer-%d", i)
		names = append(names, name)
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
	many := ofConns(names[:liveSAsOneByOne])
	many = append(many, SAQuery{Conn: "sm-peer-19", Child: "sm-peer-19-2"})
	manyWant := append(slices.Clone(names[:liveSAsOneByOne]), "sm-peer-19")
	var manySAs []string
	for _, n := range names[:liveSAsOneByOne] {
		manySAs = append(manySAs, n+"-1", n+"-2")
	}
	manySAs = append(manySAs, "sm-peer-19-2")
	var allSAs []string
	for _, n := range names {
		allSAs = append(allSAs, n+"-1", n+"-2")
	}
	for _, tc := range []struct {
		qs       []SAQuery
		want     []string // IKE_SAs
		children []string // their CHILD_SAs
		requests []string // the ike/child selectors of each list-sas
	}{
		{qs: ofConns([]string{"sm-peer-3"}), want: []string{"sm-peer-3"}, children: []string{"sm-peer-3-1", "sm-peer-3-2"}, requests: []string{"sm-peer-3/"}},
		{qs: []SAQuery{{Conn: "sm-peer-3", Child: "sm-peer-3-2"}}, want: []string{"sm-peer-3"}, children: []string{"sm-peer-3-2"}, requests: []string{"sm-peer-3/sm-peer-3-2"}},
		{qs: []SAQuery{{Conn: "sm-peer-3", Child: "sm-peer-3-2"}, {Conn: "sm-peer-3", Child: "sm-peer-3-1"}}, want: []string{"sm-peer-3"}, children: []string{"sm-peer-3-2", "sm-peer-3-1"}, requests: []string{"sm-peer-3/sm-peer-3-2", "sm-peer-3/sm-peer-3-1"}},
		{qs: ofConns([]string{"sm-peer-1", "sm-peer-7", "gone"}), want: []string{"sm-peer-1", "sm-peer-7"}, children: []string{"sm-peer-1-1", "sm-peer-1-2", "sm-peer-7-1", "sm-peer-7-2"}, requests: []string{"sm-peer-1/", "sm-peer-7/", "gone/"}},
		{qs: many, want: manyWant, children: manySAs, requests: []string{"/"}},
		{qs: nil, want: names, children: allSAs, requests: []string{"/"}},
		{qs: []SAQuery{}, want: nil, requests: nil},
	} {
		before := len(srv.Received())
		got, err := d.LiveSAs(ctx, tc.qs)
		if err != nil {
			t.Fatal(err)
		}
		var ikes, children []string
		for _, sa := range got {
			ikes = append(ikes, sa.Conn)
			for _, ch := range sa.Children {
				children = append(children, ch.Name)
			}
		}
		var asked []string
		for _, r := range srv.Received()[before:] {
			if r.Command == "list-sas" {
				ike, _ := r.Message.Get("ike").(string)
				child, _ := r.Message.Get("child").(string)
				asked = append(asked, ike+"/"+child)
			}
		}
		if !slices.Equal(ikes, tc.want) || !slices.Equal(children, tc.children) || !slices.Equal(asked, tc.requests) {
			t.Errorf("LiveSAs(%v): got %v with %v asking %q; want %v with %v asking %q", tc.qs, ikes, children, asked, tc.want, tc.children, tc.requests)
		}
	}
}

// ikeSA is the list-sa body of an IKE_SA of connection name with a
// CHILD_SA of each of its children name-1 and name-2.
func ikeSA(name string, id int) *govici.Message {
	return vicitest.Msg(name, vicitest.Msg("uniqueid", fmt.Sprint(id), "state", "ESTABLISHED",
		"child-sas", vicitest.Msg(
			name+"-1-1", vicitest.Msg("name", name+"-1", "uniqueid", fmt.Sprint(100+id), "state", "INSTALLED"),
			name+"-2-2", vicitest.Msg("name", name+"-2", "uniqueid", fmt.Sprint(200+id), "state", "INSTALLED"))))
}
