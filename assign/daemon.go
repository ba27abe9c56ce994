package assign

import (
	"context"
	"slices"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/vici"
)

// Daemon is what assign needs from charon. *vici.Client satisfies it
// through ViciDaemon; tests may use a fake.
type Daemon interface {
	LoadConn(ctx context.Context, name string, conn *govici.Message) error
	UnloadConn(ctx context.Context, name string) error
	Conns(ctx context.Context) ([]string, error)
	// ListConns lists the connections with their settings as charon
	// shows them (for drift: see viewOfInfo).
	ListConns(ctx context.Context) ([]vici.ConnInfo, error)
	// Installed returns which of children (CHILD_SA configs) have
	// their trap, pass or drop policies installed (list-policies); it
	// may name others too.
	Installed(ctx context.Context, children []string) (map[string]bool, error)
	LoadShared(ctx context.Context, id, typ string, data []byte, owners []string) error
	UnloadShared(ctx context.Context, id string) error
	SharedIDs(ctx context.Context) ([]string, error)
	LoadCert(ctx context.Context, typ, flag string, data []byte) error
	LoadKey(ctx context.Context, typ string, data []byte) (string, error)
	UnloadKey(ctx context.Context, id string) error
	Keys(ctx context.Context) ([]string, error)
	// LiveSAs lists the IKE_SAs that qs ask for (nil: every IKE_SA,
	// with all its CHILD_SAs; none: nothing).
	LiveSAs(ctx context.Context, qs []SAQuery) ([]LiveSA, error)
	TerminateIKE(ctx context.Context, uniqueID uint64) error
	TerminateChild(ctx context.Context, uniqueID uint64) error
}

// SAQuery asks for the IKE_SAs of connection Conn: with all their
// CHILD_SAs, or with Child set, only those of that child (list-sas with
// ike and child; charon's statistics of each CHILD_SA are what a listing
// costs it: 0.89 s for an IKE_SA of 500 against 0.02 s for one child).
type SAQuery struct {
	Conn, Child string
}

// ofConns asks for the IKE_SAs of conns, whole.
func ofConns(conns []string) []SAQuery {
	qs := make([]SAQuery, len(conns))
	for i, c := range conns {
		qs[i] = SAQuery{Conn: c}
	}
	return qs
}

// LiveSA is an IKE_SA as the daemon reports it.
type LiveSA struct {
	Conn     string      `json:"conn"`
	UniqueID uint64      `json:"ike_id"`
	State    string      `json:"state"`
	Remote   string      `json:"remote"`
	Children []LiveChild `json:"children,omitempty"`
}

// LiveChild is a CHILD_SA as the daemon reports it.
type LiveChild struct {
	Name     string `json:"name"`
	UniqueID uint64 `json:"child_id"`
	State    string `json:"state"`
}

// mergeSA adds sa to sas: to the IKE_SA of the same id when sas has it
// (two questions for children of one connection), with the children it
// lacks.
func mergeSA(sas []LiveSA, sa LiveSA) []LiveSA {
	for i := range sas {
		if sas[i].UniqueID != sa.UniqueID || sas[i].Conn != sa.Conn {
			continue
		}
		for _, ch := range sa.Children {
			if !slices.ContainsFunc(sas[i].Children, func(c LiveChild) bool { return c.UniqueID == ch.UniqueID }) {
				sas[i].Children = append(sas[i].Children, ch)
			}
		}
		return sas
	}
	return append(sas, sa)
}

// pickSAs is what qs ask for among sas (a listing of everything), as
// charon answers each question: the IKE_SAs of the connections asked for,
// with only the children asked for where every question of a connection
// names a child.
func pickSAs(sas []LiveSA, qs []SAQuery) []LiveSA {
	whole := map[string]bool{}
	children := map[string]map[string]bool{}
	for _, q := range qs {
		if q.Child == "" {
			whole[q.Conn] = true
			continue
		}
		if children[q.Conn] == nil {
			children[q.Conn] = map[string]bool{}
		}
		children[q.Conn][q.Child] = true
	}
	out := []LiveSA{}
	for _, sa := range sas {
		switch {
		case whole[sa.Conn]:
			out = append(out, sa)
		case children[sa.Conn] != nil:
			some := sa
			some.Children = nil
			for _, ch := range sa.Children {
				if children[sa.Conn][ch.Name] {
					some.Children = append(some.Children, ch)
				}
			}
			out = append(out, some)
		}
	}
	return out
}
