package assign

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/vici"
)

// fakeDaemon keeps connections and secrets like charon does and records
// every call.
type fakeDaemon struct {
	mu     sync.Mutex
	conns  map[string]string // name -> message text
	shared map[string][]byte
	keys   map[string]bool
	calls  []string
	// saQueries are what each LiveSAs asked for (nil: all).
	saQueries [][]SAQuery
	rejectC   map[string]bool // connection names load-conn refuses
	refuseUn  map[string]bool // connection names unload-conn refuses
	sas       []LiveSA
	failTerm  map[uint64]error // terminates that fail, by unique id
	// vanish: CHILD_SAs charon closed on its own just before their
	// terminate arrived (as it does for a child whose config an update
	// replaced): the terminate finds nothing and fails.
	vanish map[uint64]bool
	// failShared: load-shared and unload-shared of these ids fail.
	failShared map[string]error
	// lostShared: load-shared of these loads, then fails as if the answer
	// never came; afterLoadShared runs after each secret is stored (e.g.
	// to kill swanmgr right after charon took the new value).
	lostShared      map[string]bool
	afterLoadShared func(id string)
	// lostAnswer: load-conn of these loads, then fails as if the answer
	// never came.
	lostAnswer map[string]bool
	// hideConn hides connections from get-conns.
	hideConn func(name string) bool
	// msgs are the load-conn messages, for list-conns.
	msgs map[string]*govici.Message
	// noTrap: children whose traps "fail to install".
	noTrap map[string]bool
	// onLoadConn runs before each load-conn (e.g. to cancel the apply),
	// onUnloadConn before each unload-conn.
	onLoadConn, onUnloadConn func(name string)
	// installedAsked: the children each Installed call asked about.
	installedAsked []string
}

func newFake() *fakeDaemon {
	return &fakeDaemon{conns: map[string]string{}, shared: map[string][]byte{}, keys: map[string]bool{}, rejectC: map[string]bool{}, refuseUn: map[string]bool{}}
}

func (f *fakeDaemon) call(s string) { f.calls = append(f.calls, s) }

func (f *fakeDaemon) count(prefix string) int {
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix+" ") {
			n++
		}
	}
	return n
}

func (f *fakeDaemon) LoadConn(ctx context.Context, name string, m *govici.Message) error {
	if f.onLoadConn != nil {
		f.onLoadConn(name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("load-conn " + name)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if f.rejectC[name] {
		return &vici.CommandError{Command: "load-conn", Name: name, Message: "unknown option: bogus, config discarded"}
	}
	f.conns[name] = m.String()
	if f.msgs == nil {
		f.msgs = map[string]*govici.Message{}
	}
	f.msgs[name] = m
	if f.lostAnswer[name] {
		// charon loaded it, but the answer never came.
		return fmt.Errorf("load-conn %q: %w", name, context.DeadlineExceeded)
	}
	return nil
}

func (f *fakeDaemon) UnloadConn(ctx context.Context, name string) error {
	if f.onUnloadConn != nil {
		f.onUnloadConn(name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("unload-conn " + name)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if f.refuseUn[name] {
		return errors.New("unload: busy")
	}
	if _, ok := f.conns[name]; !ok {
		return fmt.Errorf("connection '%s' not found", name)
	}
	delete(f.conns, name)
	return nil
}

func (f *fakeDaemon) Conns(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.conns {
		if f.hideConn == nil || !f.hideConn(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeDaemon) LoadShared(_ context.Context, id, typ string, data []byte, owners []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("load-shared " + id)
	if err := f.failShared[id]; err != nil {
		return err
	}
	f.shared[id] = data
	if f.afterLoadShared != nil {
		f.afterLoadShared(id)
	}
	if f.lostShared[id] {
		return fmt.Errorf("load-shared %q: %w", id, context.DeadlineExceeded)
	}
	return nil
}

func (f *fakeDaemon) UnloadShared(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("unload-shared " + id)
	if err := f.failShared[id]; err != nil {
		return err
	}
	delete(f.shared, id)
	return nil
}

func (f *fakeDaemon) SharedIDs(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.shared {
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeDaemon) LoadCert(context.Context, string, string, []byte) error { return nil }
func (f *fakeDaemon) LoadKey(_ context.Context, _ string, data []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("%x", len(data)) + string(data[:4])
	f.call("load-key " + id)
	f.keys[id] = true
	return id, nil
}
func (f *fakeDaemon) UnloadKey(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("unload-key " + id)
	if !f.keys[id] {
		return fmt.Errorf("unload-key %s: charon: no such key", id)
	}
	delete(f.keys, id)
	return nil
}
func (f *fakeDaemon) Keys(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.keys {
		out = append(out, k)
	}
	return out, nil
}
func (f *fakeDaemon) LiveSAs(_ context.Context, qs []SAQuery) ([]LiveSA, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saQueries = append(f.saQueries, qs)
	if qs == nil {
		return append([]LiveSA{}, f.sas...), nil
	}
	return pickSAs(f.sas, qs), nil
}
func (f *fakeDaemon) TerminateIKE(ctx context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call(fmt.Sprintf("terminate ike-id %d", id))
	if err := f.failTerm[id]; err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var keep []LiveSA
	for _, sa := range f.sas {
		if sa.UniqueID != id {
			keep = append(keep, sa)
		}
	}
	f.sas = keep
	return nil
}
func (f *fakeDaemon) TerminateChild(ctx context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call(fmt.Sprintf("terminate child-id %d", id))
	if err := f.failTerm[id]; err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fail := error(nil)
	if f.vanish[id] {
		fail = errors.New(`terminate "CHILD_SA #" : charon: no matching SAs to terminate found`)
	}
	for i := range f.sas {
		var keep []LiveChild
		for _, ch := range f.sas[i].Children {
			if ch.UniqueID != id {
				keep = append(keep, ch)
			}
		}
		f.sas[i].Children = keep
	}
	return fail
}

// ListConns lists the connections as charon would, from the load-conn
// messages (a connection set by hand has no settings).
func (f *fakeDaemon) ListConns(context.Context) ([]vici.ConnInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []vici.ConnInfo
	for name := range f.conns {
		ci := vici.ConnInfo{Name: name}
		if body, ok := f.msgs[name]; ok {
			ci.LocalAddrs, _ = body.Get("local_addrs").([]string)
			ci.RemoteAddrs, _ = body.Get("remote_addrs").([]string)
			if ch, ok := body.Get("children").(*govici.Message); ok {
				for _, cn := range ch.Keys() {
					c, _ := ch.Get(cn).(*govici.Message)
					cc := vici.ChildConnInfo{Name: cn}
					if c != nil {
						cc.Mode, _ = c.Get("mode").(string)
						cc.LocalTS, _ = c.Get("local_ts").([]string)
						cc.RemoteTS, _ = c.Get("remote_ts").([]string)
					}
					ci.Children = append(ci.Children, cc)
				}
			}
		}
		out = append(out, ci)
	}
	return out, nil
}

// Installed lists every child of the loaded connections but those in
// noTrap, as charon would when their traps installed.
func (f *fakeDaemon) Installed(_ context.Context, children []string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installedAsked = append(f.installedAsked, strings.Join(children, " "))
	out := map[string]bool{}
	for name, body := range f.msgs {
		if _, ok := f.conns[name]; !ok {
			continue
		}
		if ch, ok := body.Get("children").(*govici.Message); ok {
			for _, cn := range ch.Keys() {
				if !f.noTrap[cn] {
					out[cn] = true
				}
			}
		}
	}
	return out, nil
}

var _ Daemon = (*fakeDaemon)(nil)
