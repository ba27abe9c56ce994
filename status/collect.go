package status

import (
	"context"
	"sync"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/vici"
)

// Daemon is what Collect asks charon. *vici.Client satisfies it; every
// method is a read-only VICI command.
type Daemon interface {
	ListSAs(ctx context.Context, f vici.SAFilter) ([]vici.IKESA, error)
	ListConns(ctx context.Context) ([]vici.ConnInfo, error)
	Conns(ctx context.Context) ([]string, error)
	Stats(ctx context.Context) (vici.Stats, error)
	Counters(ctx context.Context) (map[string]uint64, error)
	Version(ctx context.Context) (vici.Version, error)
}

var _ Daemon = (*vici.Client)(nil)

// CollectOptions tune Collect.
type CollectOptions struct {
	// Now gives the time of the snapshot; nil is time.Now.
	Now func() time.Time
	// Guard reads swanmgr's nftables guard and its drop counts; nil: the
	// view shows no guard.
	Guard GuardReader
}

// readGuard fills in the guard of the record's policy, if it has one.
func readGuard(ctx context.Context, g GuardReader, in *Input) {
	if g == nil || in.Record == nil || in.Record.GuardHash == "" {
		return
	}
	in.Guard, in.GuardDrops, in.GuardErr = g.Guard(ctx, in.Record)
}

// Unreachable is the Input for a charon that could not be reached (err):
// swanmgr's record and confirmations from records (nil: none), and the
// guard, which holds while charon is down.
func Unreachable(ctx context.Context, records Records, o CollectOptions, err error) Input {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	in := Input{Time: now(), Location: time.Local, DaemonErr: err}
	if records != nil {
		in.Record, in.RecordErr = records.Record()
		readConfirmations(records, &in)
	}
	readGuard(ctx, o.Guard, &in)
	return in
}

// Collect asks charon for everything a view needs and returns it as an
// Input, with swanmgr's record from records (nil: none), read while charon
// answers list-sas; the connections' settings are read only if the view
// needs them (NeedsBodies). Events are the caller's to add.
//
// list-sas is the one answer a view cannot do without: when it fails,
// Input.DaemonErr is set. The small commands (get-conns, stats, version,
// get-counters) run on the shared session while list-sas streams on its
// own. list-conns costs about as much as list-sas on a big configuration,
// so it is asked only when needed: for the authentication classes of
// IKE_SAs of connections swanmgr did not load (not in rec); those of its
// own connections are in the record.
func Collect(ctx context.Context, d Daemon, records Records, o CollectOptions) Input {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	var in Input
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if records != nil {
			in.Record, in.RecordErr = records.Record()
			readConfirmations(records, &in)
		}
		// The guard's record and counters (thousands of set elements
		// over netlink) are read while charon answers list-sas.
		readGuard(ctx, o.Guard, &in)
	}()
	go func() {
		defer wg.Done()
		in.Loaded, in.LoadedErr = d.Conns(ctx)
		if v, err := d.Version(ctx); err == nil {
			in.Version = &v
		} else {
			in.VersionErr = err
		}
		if s, err := d.Stats(ctx); err == nil {
			in.Stats = &s
		} else {
			in.StatsErr = err
		}
		in.Counters, in.CountersErr = d.Counters(ctx)
	}()
	sas, err := d.ListSAs(ctx, vici.SAFilter{})
	wg.Wait()
	if err != nil {
		// The guard holds while charon is down.
		return Input{Time: now(), Location: time.Local, DaemonErr: err, Record: in.Record, RecordErr: in.RecordErr,
			Confirmation: in.Confirmation, Reverted: in.Reverted, Guard: in.Guard, GuardDrops: in.GuardDrops, GuardErr: in.GuardErr}
	}
	in.SAs = sas
	if in.RecordErr == nil && NeedsBodies(in.Record, sas) {
		in.Record, in.RecordErr = records.WithBodies()
	}
	mine := ownConns(in.Record)
	for _, sa := range sas {
		if !mine[sa.Name] {
			in.Conns, in.ConnsErr = d.ListConns(ctx)
			break
		}
	}
	in.Time = now()
	in.Location = time.Local
	return in
}

// ownConns names the connections of swanmgr's record (nil: none).
func ownConns(rec *assign.Record) map[string]bool {
	mine := map[string]bool{}
	if rec != nil {
		for _, c := range rec.Conns {
			mine[c.Name] = true
		}
	}
	return mine
}
