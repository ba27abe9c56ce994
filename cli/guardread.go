package cli

import (
	"context"
	"sync"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/netfilter"
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
	rs, err := g.store.LoadGuard(rec)
	if err != nil || rs == nil {
		return nil, nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tab == nil {
		fw, err := g.open(g.sock)
		if err != nil {
			return rs, nil, err
		}
		tab, ok := fw.(counterReader)
		if !ok {
			return rs, nil, nil // a firewall that counts nothing
		}
		g.tab = tab
	}
	drops, err := g.tab.Counters(ctx)
	return rs, drops, err
}

var _ counterReader = (*netfilter.Table)(nil)
