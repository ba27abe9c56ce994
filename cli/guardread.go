package cli

import (
	"context"
	"errors"
	"sync"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/netfilter"
	"github.com/swanmgr/swanmgr/status"
)

// guardReader reads the guard swanmgr installed for a socket (its record)
// and the drop counts of the live table in charon's network namespace,
// for status, --watch and metrics. The table is opened once.
type guardReader struct {
	store assign.Store
	sock  string
	open  func(sock string) (assign.Firewall, error) // guardOpener

	mu  sync.Mutex
	tab counterReader
	// The ruleset last read and the record's hash of it: apply writes a
	// new guard record only with a new hash, so a --watch refresh with the
	// same hash does not read the file again (2,000 entries: about 4 ms).
	hash string
	rs   *guard.Ruleset
}

// counterReader is the part of netfilter.Table status needs.
type counterReader interface {
	Counters(ctx context.Context) (map[string]uint64, error)
}

func newGuardReader(store assign.Store, sock string, meta map[string]any) *guardReader {
	return &guardReader{store: store, sock: sock, open: guardOpener(meta)}
}

// Guard implements status.GuardReader.
func (g *guardReader) Guard(ctx context.Context, rec *assign.Record) (*guard.Ruleset, map[string]uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rs := g.rs
	if rec == nil || rec.GuardHash == "" || rec.GuardHash != g.hash {
		var err error
		g.hash, g.rs = "", nil
		if rs, err = g.store.LoadGuard(rec); err != nil || rs == nil {
			return nil, nil, err
		}
		g.hash, g.rs = rec.GuardHash, rs
	}
	if err := g.openTable(); err != nil || g.tab == nil {
		return rs, nil, err // g.tab nil: a firewall that counts nothing
	}
	drops, err := g.tab.Counters(ctx)
	return rs, drops, err
}

// openTable opens the table once; g.tab stays nil for a firewall that
// counts nothing. g.mu is held.
func (g *guardReader) openTable() error {
	if g.tab != nil {
		return nil
	}
	fw, err := g.open(g.sock)
	if err != nil {
		return err
	}
	if tab, ok := fw.(counterReader); ok {
		g.tab = tab
	}
	return nil
}

// errNoTotals: the firewall keeps no totals.
var errNoTotals = errors.New("the guard keeps no totals")

// Totals implements status.TotalsReader: the live table's totals.
func (g *guardReader) Totals(ctx context.Context) (status.Totals, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.openTable(); err != nil {
		return status.Totals{}, err
	}
	tr, ok := g.tab.(totalsReader)
	if !ok {
		return status.Totals{}, errNoTotals
	}
	t, err := tr.Totals(ctx)
	return status.Totals{Traffic: t.Traffic, Dropped: t.Dropped}, err
}

// totalsReader is the part of netfilter.Table the totals need.
type totalsReader interface {
	Totals(ctx context.Context) (netfilter.Totals, error)
}

var (
	_ counterReader       = (*netfilter.Table)(nil)
	_ totalsReader        = (*netfilter.Table)(nil)
	_ status.TotalsReader = (*guardReader)(nil)
	_ assign.Warmer       = (*netfilter.Table)(nil)
)
