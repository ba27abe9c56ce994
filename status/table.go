package status

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultWidth is the width the table fits into when none is given.
const DefaultWidth = 100

// TableOptions tune WriteTable.
type TableOptions struct {
	// Width is the line width to fit (DefaultWidth when 0).
	Width int
	// Color adds ANSI colours (states, titles). Callers set it only for a
	// terminal and never with NO_COLOR.
	Color bool
}

// ANSI colours.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
)

type tableWriter struct {
	sb    strings.Builder
	o     TableOptions
	width int
}

func (t *tableWriter) color(code, s string) string {
	if !t.o.Color || s == "" {
		return s
	}
	return code + s + ansiReset
}

// WriteTable writes a view as text: a header, the security associations
// grouped by rule, the IKE_SAs and the statistics, fitting o.Width columns.
func WriteTable(w io.Writer, st *Status, o TableOptions) error {
	t := &tableWriter{o: o, width: o.Width}
	if t.width <= 0 {
		t.width = DefaultWidth
	}
	t.header(st)
	if st.Daemon.Reachable {
		t.sas(st)
		t.guardTable(st)
		t.ikes(st)
		t.stats(st)
	} else {
		t.guardTable(st)
	}
	for _, warn := range st.Warnings {
		writeWrapped(&t.sb, t.color(ansiYellow, "warning: ")+warn, 0, 2, t.width)
	}
	_, err := io.WriteString(w, t.sb.String())
	return err
}

func stamp(tm time.Time) string { return tm.UTC().Format(time.RFC3339) }

func (t *tableWriter) header(st *Status) {
	d := st.Daemon
	name := "charon"
	if d.Name != nil {
		name = *d.Name
	}
	if !d.Reachable {
		why := "unknown error"
		if d.Error != nil {
			why = *d.Error
		}
		writeWrapped(&t.sb, fmt.Sprintf("%s at %s · %s", name, st.Socket, stamp(st.Time)), 0, 2, t.width)
		writeWrapped(&t.sb, t.color(ansiRed+ansiBold, "daemon unavailable")+": "+why, 0, 2, t.width)
	} else {
		line := name
		if d.Version != nil {
			line += " " + *d.Version
		}
		var sys []string
		for _, p := range []*string{d.Sysname, d.Release, d.Machine} {
			if p != nil {
				sys = append(sys, *p)
			}
		}
		if len(sys) > 0 {
			line += " (" + strings.Join(sys, " ") + ")"
		}
		line += " at " + st.Socket
		writeWrapped(&t.sb, line, 0, 2, t.width)
		up := "uptime n/a"
		if d.UptimeSeconds != nil && d.StartedAt != nil {
			up = fmt.Sprintf("up %s since %s", age(*d.UptimeSeconds), stamp(*d.StartedAt))
		}
		writeWrapped(&t.sb, fmt.Sprintf("%s · status at %s", up, stamp(st.Time)), 0, 2, t.width)
	}
	if p := st.Policy; p != nil {
		writeWrapped(&t.sb, fmt.Sprintf("Assigned policy %q (%s backend) from %s, applied %s", p.Name, p.Backend, p.Source, stamp(p.AppliedAt)), 0, 2, t.width)
	} else {
		t.sb.WriteString("No policy assigned by swanmgr\n")
	}
	t.confirmLines(st)
	var f []string
	if st.Filter.Rule != "" {
		f = append(f, fmt.Sprintf("rule %q", st.Filter.Rule))
	}
	if st.Filter.Peer != "" {
		f = append(f, "peer "+st.Filter.Peer)
	}
	if len(f) > 0 {
		t.sb.WriteString("Showing only " + strings.Join(f, " and ") + "\n")
	}
}

// age writes a number of seconds compactly: 45s, 12m3s, 3h44m, 2d3h.
func age(sec int64) string {
	b := make([]byte, 0, 12)
	if sec < 0 {
		b, sec = append(b, '-'), -sec
	}
	two := func(hi int64, hu byte, lo int64, lu byte) {
		b = strconv.AppendInt(b, hi, 10)
		b = append(b, hu)
		b = strconv.AppendInt(b, lo, 10)
		b = append(b, lu)
	}
	switch {
	case sec < 60:
		b = append(strconv.AppendInt(b, sec, 10), 's')
	case sec < 3600:
		two(sec/60, 'm', sec%60, 's')
	case sec < 86400:
		two(sec/3600, 'h', sec%3600/60, 'm')
	default:
		two(sec/86400, 'd', sec%86400/3600, 'h')
	}
	return string(b)
}

var saColumns = []column{
	{head: "#", right: true},
	{head: "SOURCE", flex: true, min: 15},
	{head: "PORT", flex: true},
	{head: "DESTINATION", short: "DEST", flex: true, min: 15},
	{head: "PORT", flex: true},
	{head: "PROTOCOL", short: "PROTO"},
	{head: "TUNNEL ENDPOINT", short: "TUNNEL", flex: true, min: 6},
	{head: "STATE", flex: true, min: 11},
}

// Cell texts shared with the JSON (docs/status-json.md says how they map).
const (
	anyText  = "any"
	noneText = "none"
	naText   = "n/a"
)

// PortText is a side's port column: a number, a range lo-hi, "any".
func PortText(e Endpoint) string {
	switch {
	case e.Port != nil:
		return strconv.Itoa(*e.Port)
	case e.PortRange != nil:
		return fmt.Sprintf("%d-%d", e.PortRange[0], e.PortRange[1])
	case e.AnyPort:
		return anyText
	case len(e.Selectors) == 0:
		return "?"
	}
	return "mixed"
}

// AddressText is a side's address column.
func AddressText(e Endpoint) string {
	if len(e.Addresses) == 0 {
		return "?"
	}
	return strings.Join(e.Addresses, ",")
}

// ProtocolText is the protocol column: TCP, UDP, ICMP, a number, ANY.
func ProtocolText(p *string) string {
	if p == nil {
		return "ANY"
	}
	return strings.ToUpper(*p)
}

// TunnelText is the tunnel endpoint column.
func TunnelText(r SA) string {
	if r.TunnelEndpoint == nil {
		return noneText
	}
	return *r.TunnelEndpoint
}

// TrafficText is the traffic item of a row's detail line.
func TrafficText(r SA) string {
	if r.BytesIn == nil || r.BytesOut == nil || r.PacketsIn == nil || r.PacketsOut == nil {
		return ""
	}
	b := make([]byte, 0, 64)
	b = strconv.AppendUint(append(b, "in "...), *r.BytesIn, 10)
	b = strconv.AppendUint(append(b, " B, "...), *r.PacketsIn, 10)
	b = strconv.AppendUint(append(b, " packets · out "...), *r.BytesOut, 10)
	b = strconv.AppendUint(append(b, " B, "...), *r.PacketsOut, 10)
	return string(append(b, " packets"...))
}

func (t *tableWriter) stateColor(s string) string {
	switch s {
	case StateInstalled:
		return ansiGreen
	case StateNotEstablished, StateNotLoaded, "DELETING", "DESTROYING":
		return ansiRed + ansiBold
	case StatePermit, StateBlock:
		return ansiDim
	}
	return ansiYellow
}

// groupKey tells rows of one group apart: a rule of swanmgr's policy, or a
// connection swanmgr did not load.
func groupKey(r SA) string {
	if r.Managed && r.Rule != nil {
		return "rule\x00" + *r.Rule
	}
	return "conn\x00" + r.Connection
}

func (t *tableWriter) sas(st *Status) {
	up, down := 0, 0
	for _, r := range st.SAs {
		switch {
		case r.HasSA:
			up++
		case r.State == StateNotEstablished || r.State == StateNegotiating || r.State == StateNotLoaded:
			down++
		}
	}
	t.sb.WriteString("\n")
	t.sb.WriteString(t.color(ansiBold, fmt.Sprintf("SECURITY ASSOCIATIONS: %d up, %d not established", up, down)) + "\n")
	if len(st.SAs) == 0 {
		t.sb.WriteString("  none\n")
		return
	}
	cells := make([][]string, len(st.SAs))
	for i, r := range st.SAs {
		num := "-"
		if r.Filter != nil {
			num = strconv.Itoa(*r.Filter)
		}
		cells[i] = []string{num, AddressText(r.Source), PortText(r.Source), AddressText(r.Destination),
			PortText(r.Destination), ProtocolText(r.Protocol), TunnelText(r), r.State}
	}
	const indent = 2
	w, heads := layout(saColumns, cells, indent, t.width)
	detailIndent := indent + w[0] + 2
	// Thousands of rows are written on every CPU, in chunks joined in order.
	workers := 1
	if len(st.SAs) >= 512 {
		workers = min(runtime.GOMAXPROCS(0), 8)
	}
	per := (len(st.SAs) + workers - 1) / workers
	parts := make([]strings.Builder, workers)
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		lo, hi := k*per, min((k+1)*per, len(st.SAs))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb := &parts[k]
			sb.Grow((hi - lo) * 400)
			for i := lo; i < hi; i++ {
				t.saRow(sb, st, i, cells[i], w, heads, indent, detailIndent)
			}
		}()
	}
	wg.Wait()
	hostToHost := false
	for k := range parts {
		t.sb.WriteString(parts[k].String())
	}
	for _, r := range st.SAs {
		hostToHost = hostToHost || r.HostToHostTunnel
	}
	if hostToHost {
		t.sb.WriteString("\n")
		note := "Tunnel endpoint \"none\" on a tunnel-mode SA: a host-to-host tunnel between the IKE peers"
		if st.Policy != nil && st.Policy.Backend == "libipsec" {
			note += " (charon's libipsec backend has no transport mode; swanmgr renders rules without a tunnel endpoint this way)"
		}
		note += "."
		writeWrapped(&t.sb, note, 0, 0, t.width)
	}
}

// saRow writes row i of the SA section (after its group's title and
// headings when it starts a group) to sb.
func (t *tableWriter) saRow(sb *strings.Builder, st *Status, i int, cells []string, w []int, heads []string, indent, detailIndent int) {
	r := st.SAs[i]
	if i == 0 || groupKey(r) != groupKey(st.SAs[i-1]) {
		if i > 0 {
			sb.WriteString("\n")
		}
		t.groupTitle(sb, r)
		writeRow(sb, saColumns, w, heads, indent, func(_ int, s string) string { return t.color(ansiDim, s) })
	}
	writeRow(sb, saColumns, w, cells, indent, func(col int, s string) string {
		if col == len(saColumns)-1 {
			return t.color(t.stateColor(r.State), s)
		}
		return s
	})
	items := make([]string, 0, 6)
	if r.Security != nil {
		items = append(items, r.Security.Text)
	}
	items = append(items, TrafficText(r))
	if r.EstablishedSeconds != nil {
		items = append(items, "established "+age(*r.EstablishedSeconds)+" ago")
	}
	if r.RekeyInSeconds != nil {
		if *r.RekeyInSeconds < 0 {
			items = append(items, "rekey overdue by "+age(-*r.RekeyInSeconds))
		} else {
			items = append(items, "rekey in "+age(*r.RekeyInSeconds))
		}
	}
	if r.HasSA && r.Filter == nil && r.FilterText == nil && r.Managed {
		items = append(items, "filter unknown")
	}
	if r.Note != nil {
		items = append(items, *r.Note)
	}
	writeItems(sb, items, detailIndent, t.width)
}

func (t *tableWriter) groupTitle(sb *strings.Builder, r SA) {
	var s string
	if r.Managed && r.Rule != nil {
		pol := ""
		if r.Policy != nil {
			pol = *r.Policy
		}
		s = fmt.Sprintf("Policy %q · rule %q", pol, *r.Rule)
		if r.FilterList != nil {
			s += fmt.Sprintf(" · filter list %q", *r.FilterList)
		}
		if r.Action != nil && *r.Action != "negotiate" {
			s += " · " + *r.Action
		}
		if r.Guarded {
			s += " · guarded"
		}
	} else {
		s = fmt.Sprintf("Not managed by swanmgr · connection %q", r.Connection)
	}
	parts := wrapText(s, t.width)
	for i, p := range parts {
		if i > 0 {
			p = "  " + p
		}
		sb.WriteString(t.color(ansiBold, p) + "\n")
	}
}

var ikeColumns = []column{
	{head: "PEER", flex: true, min: 12},
	{head: "IDENTITY", flex: true, min: 10},
	{head: "AUTH"},
	{head: "IKE"},
	{head: "NAT"},
	{head: "STATE"},
	{head: "AGE", right: true},
}

// AuthText abbreviates an authentication class for the table.
func AuthText(c *string) string {
	if c == nil {
		return naText
	}
	switch *c {
	case "pre-shared key":
		return "PSK"
	case "public key":
		return "pubkey"
	}
	return *c
}

// NATText is the NAT column: none, local, remote, both.
func NATText(n NAT) string {
	switch {
	case n.Local && n.Remote:
		return "both"
	case n.Local:
		return "local"
	case n.Remote:
		return "remote"
	}
	return "none"
}

func hostPort(e IKEEndpoint) string {
	if e.Port == nil {
		return e.Address
	}
	return fmt.Sprintf("%s[%d]", e.Address, *e.Port)
}

func (t *tableWriter) ikes(st *Status) {
	t.sb.WriteString("\n")
	t.sb.WriteString(t.color(ansiBold, fmt.Sprintf("IKE SAS: %d", len(st.IKESAs))) + "\n")
	if len(st.IKESAs) == 0 {
		t.sb.WriteString("  none\n")
		return
	}
	cells := make([][]string, len(st.IKESAs))
	for i, r := range st.IKESAs {
		auth := AuthText(r.AuthRemote)
		if r.AuthLocal != nil && r.AuthRemote != nil && *r.AuthLocal != *r.AuthRemote {
			auth = AuthText(r.AuthLocal) + "/" + AuthText(r.AuthRemote)
		}
		ver := naText
		if r.Version != nil {
			ver = fmt.Sprintf("IKEv%d", *r.Version)
		}
		ag := "-"
		if r.EstablishedSeconds != nil {
			ag = age(*r.EstablishedSeconds)
		}
		cells[i] = []string{hostPort(r.Remote), r.Remote.ID, auth, ver, NATText(r.NAT), r.State, ag}
	}
	const indent = 2
	w, heads := layout(ikeColumns, cells, indent, t.width)
	writeRow(&t.sb, ikeColumns, w, heads, indent, func(_ int, s string) string { return t.color(ansiDim, s) })
	for i, r := range st.IKESAs {
		writeRow(&t.sb, ikeColumns, w, cells[i], indent, func(col int, s string) string {
			if col == 5 {
				c := ansiYellow
				if r.State == "ESTABLISHED" {
					c = ansiGreen
				}
				return t.color(c, s)
			}
			return s
		})
		what := fmt.Sprintf("%s #%d", r.Connection, r.IKESAID)
		if r.Rule != nil {
			what += fmt.Sprintf(" (rule %q)", *r.Rule)
		} else {
			what += " (not managed)"
		}
		items := []string{what}
		if r.Algorithms.Text != "" {
			items = append(items, r.Algorithms.Text)
		}
		items = append(items, fmt.Sprintf("local %s as %s", hostPort(r.Local), r.Local.ID))
		role := "responder"
		if r.Initiator {
			role = "initiator"
		}
		kids := fmt.Sprintf("%d CHILD_SAs", r.ChildSAs)
		if r.ChildSAs == 1 {
			kids = "1 CHILD_SA"
		}
		items = append(items, role, kids)
		if r.RekeyInSeconds != nil {
			items = append(items, "rekey in "+age(*r.RekeyInSeconds))
		}
		if r.ReauthInSeconds != nil {
			items = append(items, "reauth in "+age(*r.ReauthInSeconds))
		}
		writeItems(&t.sb, items, indent+4, t.width)
	}
	if note := natNote(st); note != "" {
		t.sb.WriteString("\n")
		writeWrapped(&t.sb, note, 0, 0, t.width)
	}
}

// natNote explains a NAT column that says there is a NAT: libipsec fakes
// one to force UDP encapsulation, so "remote" need not mean a NAT.
func natNote(st *Status) string {
	nat := false
	for _, r := range st.IKESAs {
		nat = nat || r.NAT.Local || r.NAT.Remote
	}
	if !nat {
		return ""
	}
	if st.Policy != nil && st.Policy.Backend == "libipsec" {
		return "NAT: the assigned policy uses the libipsec backend, which sends ESP only inside UDP (port 4500) and makes charon fake NAT detection to force it: \"remote\" here does not mean a NAT lies between the hosts; a real NAT on this side shows as \"local\" (docs/nat.md)."
	}
	return "NAT: what charon detected. A charon on the libipsec backend (kernel-libipsec), here or at the peer, fakes NAT detection to force ESP inside UDP (port 4500), so \"remote\" need not mean a NAT between the hosts; a real NAT on this side shows as \"local\" (docs/nat.md)."
}

// FigureText is a statistic's value column: the number or "n/a".
func FigureText(f Figure) string {
	if f.Value == nil {
		return naText
	}
	return strconv.FormatUint(*f.Value, 10)
}

// figureSource is the short "where from" of a statistic in the table; the
// JSON has the full note.
func figureSource(label string, f Figure) string {
	if f.Value == nil {
		switch {
		case strings.HasPrefix(f.Note, "daemon unavailable"):
			return f.Note
		case label == "Rekeys":
			return "charon's counters plugin is not loaded"
		case label == "Half-open IKE_SAs" || label == "IKE_SAs":
			return "stats failed"
		case label == "Authentication Failures":
			return "charon 5.9 does not count them (status --watch does)"
		}
		return "charon does not count them (status --watch does)"
	}
	switch *f.Source {
	case SourceListSAs:
		switch label {
		case "Active Associations":
			return "CHILD_SAs installed now"
		case "Confidential Bytes Sent", "Confidential Bytes Received":
			return "ESP with encryption, SAs present now"
		}
		return "integrity only, SAs present now"
	case SourceStats:
		return "now"
	case SourceCounters:
		return strings.TrimSuffix(f.Note, " (counters plugin)")
	case SourceEvents:
		s := "counted by swanmgr"
		if f.Since != nil {
			s += " since " + stamp(*f.Since)
		}
		return s
	}
	return *f.Source
}

func (t *tableWriter) stats(st *Status) {
	t.sb.WriteString("\n")
	t.sb.WriteString(t.color(ansiBold, "STATISTICS (whole daemon)") + "\n")
	figs := st.Statistics.figures()
	cols := []column{{head: "", flex: true, min: 16}, {head: "", right: true}, {head: "", flex: true, min: 20}}
	cells := make([][]string, len(figs))
	for i, f := range figs {
		cells[i] = []string{f.label, FigureText(*f.fig), figureSource(f.label, *f.fig)}
	}
	w, _ := layout(cols, cells, 2, t.width)
	for i, f := range figs {
		writeRow(&t.sb, cols, w, cells[i], 2, func(col int, s string) string {
			if col == 1 && f.fig.Value == nil {
				return t.color(ansiDim, s)
			}
			return s
		})
	}
	if n := st.Statistics.EventsReconnects; n > 0 {
		writeWrapped(&t.sb, fmt.Sprintf("Events raised while swanmgr was not connected to charon (%d reconnections) are not counted.", n), 2, 2, t.width)
	}
}
