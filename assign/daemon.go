package assign

import (
	"context"

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
	// LiveSAs lists the IKE_SAs of the connections conns (nil: every
	// IKE_SA) with their CHILD_SAs.
	LiveSAs(ctx context.Context, conns []string) ([]LiveSA, error)
	TerminateIKE(ctx context.Context, uniqueID uint64) error
	TerminateChild(ctx context.Context, uniqueID uint64) error
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
