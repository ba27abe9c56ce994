package assign

import (
	"context"
	"time"

	"github.com/swanmgr/swanmgr/vici"
)

// ViciDaemon adapts a vici.Client to Daemon.
type ViciDaemon struct {
	*vici.Client
}

var _ Daemon = ViciDaemon{}

// teardownTimeout bounds how long a terminate waits for the peer's answer
// to a DELETE; the SA is removed locally either way (force).
const teardownTimeout = 3 * time.Second

// LiveSAs lists the IKE_SAs qs ask for (nil: every IKE_SA). Up to
// liveSAsOneByOne questions are asked one by one (list-sas with ike, and
// child when set): a change of one rule at a gateway of 10,000 CHILD_SAs
// then does not have charon list them all (seconds of its time); more are
// answered from one listing of everything.
func (d ViciDaemon) LiveSAs(ctx context.Context, qs []SAQuery) ([]LiveSA, error) {
	var out []LiveSA
	switch {
	case qs != nil && len(qs) <= liveSAsOneByOne:
		for _, q := range qs {
			sas, err := d.Client.ListSAs(ctx, vici.SAFilter{IKE: q.Conn, Child: q.Child})
			if err != nil {
				return nil, err
			}
			for _, sa := range sas {
				out = mergeSA(out, liveSA(sa))
			}
		}
	default:
		sas, err := d.Client.ListSAs(ctx, vici.SAFilter{})
		if err != nil {
			return nil, err
		}
		out = make([]LiveSA, 0, len(sas))
		for _, sa := range sas {
			out = append(out, liveSA(sa))
		}
		if qs != nil {
			out = pickSAs(out, qs)
		}
	}
	return out, nil
}

func liveSA(sa vici.IKESA) LiveSA {
	l := LiveSA{Conn: sa.Name, UniqueID: sa.UniqueID, State: sa.State, Remote: sa.RemoteHost}
	for _, ch := range sa.Children {
		l.Children = append(l.Children, LiveChild{Name: ch.Name, UniqueID: ch.UniqueID, State: ch.State})
	}
	return l
}

// TerminateIKE deletes an IKE_SA and its CHILD_SAs.
func (d ViciDaemon) TerminateIKE(ctx context.Context, id uint64) error {
	return d.Client.Terminate(ctx, vici.TerminateRequest{IKEID: id, Force: true, Timeout: teardownTimeout}, nil)
}

// TerminateChild deletes one CHILD_SA.
func (d ViciDaemon) TerminateChild(ctx context.Context, id uint64) error {
	return d.Client.Terminate(ctx, vici.TerminateRequest{ChildID: id, Timeout: teardownTimeout}, nil)
}

// Installed lists which of children have installed trap, pass or drop
// policies. A few are asked for one by one (charon's child filter), so
// that a change of one rule does not list every policy of thousands.
func (d ViciDaemon) Installed(ctx context.Context, children []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(children) > installedOneByOne {
		ps, err := d.Client.ListPolicies(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			out[p.Child] = true
		}
		return out, nil
	}
	for _, child := range children {
		ps, err := d.Client.ListPolicies(ctx, child)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			out[p.Child] = true
		}
	}
	return out, nil
}

// liveSAsOneByOne is how many questions LiveSAs asks one by one before it
// lists every SA instead.
const liveSAsOneByOne = 16

// installedOneByOne is how many children Installed asks for one by one
// before it lists every policy instead (each question is a round trip,
// the whole list at 5,000 rules about 90 ms).
const installedOneByOne = 16
