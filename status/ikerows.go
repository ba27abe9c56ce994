package status

import (
	"slices"
	"strings"
	"time"

	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// ago turns charon's "seconds since" into a time and seconds.
func (b *builder) ago(d time.Duration) (*time.Time, *int64) {
	return ptr(b.now.Add(-d)), ptr(int64(d / time.Second))
}

// until turns charon's "seconds until" into a time and seconds; charon
// leaves the value out (0 here) when nothing is scheduled. A negative
// value is overdue.
func (b *builder) until(d time.Duration) (*time.Time, *int64) {
	if d == 0 {
		return nil, nil
	}
	return ptr(b.now.Add(d)), ptr(int64(d / time.Second))
}

func (b *builder) ikeRows() []IKESA {
	rows := []IKESA{}
	var managed, other []*vici.IKESA
	order := map[string]int{}
	if rec := b.in.Record; rec != nil {
		for i, c := range rec.Conns {
			order[c.Name] = i
		}
	}
	for i := range b.in.SAs {
		sa := &b.in.SAs[i]
		if cc := b.conns[sa.Name]; cc != nil {
			if b.connMatch(cc.rc) {
				managed = append(managed, sa)
			}
		} else if b.f.Rule == "" {
			other = append(other, sa)
		}
	}
	slices.SortStableFunc(managed, func(x, y *vici.IKESA) int {
		if order[x.Name] != order[y.Name] {
			return order[x.Name] - order[y.Name]
		}
		return cmpU(x.UniqueID, y.UniqueID)
	})
	slices.SortStableFunc(other, func(x, y *vici.IKESA) int {
		if c := strings.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		return cmpU(x.UniqueID, y.UniqueID)
	})
	conns := map[string]*vici.ConnInfo{}
	for i := range b.in.Conns {
		conns[b.in.Conns[i].Name] = &b.in.Conns[i]
	}
	for _, sa := range append(managed, other...) {
		if !b.peerMatch(sa.RemoteHost, sa.RemoteID) {
			continue
		}
		r := IKESA{
			Connection:   sa.Name,
			IKESAID:      sa.UniqueID,
			State:        sa.State,
			Version:      optInt(sa.Version),
			Initiator:    sa.Initiator,
			Local:        IKEEndpoint{Address: sa.LocalHost, Port: optInt(int(sa.LocalPort)), ID: sa.LocalID},
			Remote:       IKEEndpoint{Address: sa.RemoteHost, Port: optInt(int(sa.RemotePort)), ID: sa.RemoteID},
			Algorithms:   ikeAlgorithms(*sa),
			NAT:          NAT{Local: sa.NATLocal, Remote: sa.NATRemote, Fake: sa.NATFake, Any: sa.NATAny},
			ChildSAs:     len(sa.Children),
			InitiatorSPI: sa.InitiatorSPI,
			ResponderSPI: sa.ResponderSPI,
		}
		if cc := b.conns[sa.Name]; cc != nil {
			r.Managed = true
			r.Policy = ptr(cc.rc.Origin.Policy)
			// One IKE_SA carries the SAs of every rule to its peer.
			r.Rule = ptr(strings.Join(render.Rules(cc.rc.Origin, cc.rc.Children), ", "))
			r.AuthLocal, r.AuthRemote = optStr(cc.authLocal), optStr(cc.authRemote)
		} else if ci := conns[sa.Name]; ci != nil {
			if len(ci.Local) > 0 {
				r.AuthLocal = optStr(ci.Local[0].Class)
			}
			if len(ci.Remote) > 0 {
				r.AuthRemote = optStr(ci.Remote[0].Class)
			}
		}
		if sa.State == "ESTABLISHED" {
			r.EstablishedAt, r.EstablishedSeconds = b.ago(sa.Established)
		}
		r.RekeyAt, r.RekeyInSeconds = b.until(sa.RekeyTime)
		r.ReauthAt, r.ReauthInSeconds = b.until(sa.ReauthTime)
		rows = append(rows, r)
	}
	return rows
}
