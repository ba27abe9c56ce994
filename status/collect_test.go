package status

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/vici"
)

// slowDaemon answers list-sas only once the guard was read (or fails it
// with down), so a Collect that reads the guard after list-sas times out.
type slowDaemon struct {
	guardRead chan struct{}
	down      error
}

func (d *slowDaemon) ListSAs(ctx context.Context, _ vici.SAFilter) ([]vici.IKESA, error) {
	select {
	case <-d.guardRead:
	case <-time.After(5 * time.Second):
		return nil, errors.New("the guard was not read while list-sas ran")
	}
	return nil, d.down
}
func (d *slowDaemon) ListConns(context.Context) ([]vici.ConnInfo, error)  { return nil, nil }
func (d *slowDaemon) Conns(context.Context) ([]string, error)             { return nil, nil }
func (d *slowDaemon) Stats(context.Context) (vici.Stats, error)           { return vici.Stats{}, nil }
func (d *slowDaemon) Counters(context.Context) (map[string]uint64, error) { return nil, nil }
func (d *slowDaemon) Version(context.Context) (vici.Version, error)       { return vici.Version{}, nil }

type oneRecord struct{ rec *assign.Record }

func (r oneRecord) Record() (*assign.Record, error)     { return r.rec, nil }
func (r oneRecord) WithBodies() (*assign.Record, error) { return r.rec, nil }

type signalGuard struct {
	read chan struct{}
	rs   *guard.Ruleset
}

func (g *signalGuard) Guard(context.Context, *assign.Record) (*guard.Ruleset, map[string]uint64, error) {
	close(g.read)
	return g.rs, map[string]uint64{"r-x": 3}, nil
}

// The guard (its record and its counters over netlink) is read while
// charon answers list-sas, and is in the view also when charon is down.
func TestCollectReadsTheGuardBesideListSAs(t *testing.T) {
	rec := &assign.Record{Socket: "/x", GuardHash: "h"}
	for _, down := range []error{nil, errors.New("charon is gone")} {
		g := &signalGuard{read: make(chan struct{}), rs: &guard.Ruleset{}}
		d := &slowDaemon{guardRead: g.read, down: down}
		in := Collect(context.Background(), d, oneRecord{rec}, CollectOptions{Guard: g})
		if (in.DaemonErr == nil) != (down == nil) {
			t.Fatalf("down=%v: DaemonErr %v", down, in.DaemonErr)
		}
		if in.Guard != g.rs || in.GuardDrops["r-x"] != 3 {
			t.Errorf("down=%v: guard %p, drops %v; want the guard read", down, in.Guard, in.GuardDrops)
		}
	}
}
