package status

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
)

// GuardReader reads swanmgr's nftables guard of an assigned policy: the
// ruleset swanmgr installed (from its record) and, per rule counter, the
// clear-text packets the guard dropped (from the live table).
type GuardReader interface {
	Guard(ctx context.Context, rec *assign.Record) (*guard.Ruleset, map[string]uint64, error)
}

// Guard is the nftables guard of the assigned policy: which rules it
// enforces and how many clear-text packets it dropped for each (the
// honest answer to "was anything sent unprotected?"). It holds while
// charon is down, so it is shown then too.
type Guard struct {
	Table   string      `json:"table"`   // "inet swanmgr"
	Backend string      `json:"backend"` // what "protected" means: kernel or libipsec
	Rules   []GuardRule `json:"rules"`
	// Error says why the counters could not be read (then every
	// dropped_packets is null).
	Error *string `json:"error"`
}

// GuardRule is one rule the guard enforces.
type GuardRule struct {
	Rule   string `json:"rule"`
	Action string `json:"action"` // negotiate (drops what no SA protects) or block (drops all)
	// DroppedPackets are the clear-text packets dropped for the rule since
	// its guard entries were installed; null when unknown.
	DroppedPackets *uint64 `json:"dropped_packets"`
}

// guardView builds the guard part of a view, narrowed to f's rule.
func (b *builder) guardView() *Guard {
	rs := b.in.Guard
	if rs == nil {
		return nil
	}
	g := &Guard{Table: "inet " + guard.Table, Backend: string(rs.Backend), Rules: []GuardRule{}}
	if b.in.GuardErr != nil {
		msg := b.in.GuardErr.Error()
		g.Error = &msg
	}
	for _, r := range rs.Guarded() {
		if b.f.Rule != "" && !strings.EqualFold(r.Name, b.f.Rule) {
			continue
		}
		gr := GuardRule{Rule: r.Name, Action: string(r.Verdict)}
		if b.in.GuardErr == nil && b.in.GuardDrops != nil {
			n := b.in.GuardDrops[r.Counter]
			gr.DroppedPackets = &n
		}
		g.Rules = append(g.Rules, gr)
	}
	return g
}

// markGuarded sets Guarded on the rows of rules the guard enforces.
func markGuarded(st *Status, rs *guard.Ruleset) {
	if rs == nil {
		return
	}
	for i := range st.SAs {
		if r := st.SAs[i].Rule; r != nil && st.SAs[i].Managed && rs.Rule(*r) != nil {
			st.SAs[i].Guarded = true
		}
	}
}

// guardTable writes the guard's rules and drop counts.
func (t *tableWriter) guardTable(st *Status) {
	g := st.Guard
	if g == nil {
		return
	}
	t.sb.WriteString("\n")
	t.sb.WriteString(t.color(ansiBold, fmt.Sprintf("GUARD (nftables table %s, %s backend)", g.Table, g.Backend)) + "\n")
	writeWrapped(&t.sb, "Clear text these rules match is dropped when no SA protects it (negotiate) or always (block), also while charon is down.", 2, 0, t.width)
	cols := []column{{head: "RULE", flex: true, min: 12}, {head: "ACTION"}, {head: "CLEAR-TEXT PACKETS DROPPED", right: true}}
	cells := make([][]string, len(g.Rules))
	for i, r := range g.Rules {
		n := "n/a"
		if r.DroppedPackets != nil {
			n = strconv.FormatUint(*r.DroppedPackets, 10)
		}
		cells[i] = []string{strconv.Quote(r.Rule), r.Action, n}
	}
	heads := []string{cols[0].head, cols[1].head, cols[2].head}
	w, _ := layout(cols, append([][]string{heads}, cells...), 2, t.width)
	writeRow(&t.sb, cols, w, heads, 2, func(_ int, s string) string { return t.color(ansiDim, s) })
	for i := range g.Rules {
		writeRow(&t.sb, cols, w, cells[i], 2, func(col int, s string) string {
			if col == 2 && g.Rules[i].DroppedPackets != nil && *g.Rules[i].DroppedPackets > 0 {
				return t.color(ansiYellow, s)
			}
			return s
		})
	}
	if g.Error != nil {
		writeWrapped(&t.sb, t.color(ansiYellow, "warning: ")+"the guard's counters could not be read: "+*g.Error, 2, 4, t.width)
	}
}
