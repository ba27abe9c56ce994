package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// assignedConns returns the connections swanmgr loaded for a rule (all
// rules when rule is ""), from the record.
func assignedConns(s *session, rule string) ([]assign.RecordConn, *assign.Record, error) {
	rec, err := s.engine.Store.Load(s.socket)
	if err != nil {
		return nil, nil, err
	}
	if rec == nil || len(rec.Conns) == 0 {
		return nil, nil, fmt.Errorf("swanmgr has assigned no policy to charon at %s: run swanmgr apply first", s.socket)
	}
	if err := s.engine.Store.LoadBodies(rec); err != nil {
		return nil, nil, err
	}
	var out []assign.RecordConn
	var rules []string
	for _, c := range rec.Conns {
		if !contains(rules, c.Origin.Rule) {
			rules = append(rules, c.Origin.Rule)
		}
		if rule == "" || strings.EqualFold(c.Origin.Rule, rule) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, nil, usageErrorf("policy %q has no rule %q (rules: %s)", rec.Policy, rule, quoteAll(rules))
	}
	return out, rec, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func quoteAll(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

func initiateCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "initiate",
		Usage: "negotiate the SAs of a rule (all rules without --rule), showing charon's log as it works",
		Flags: daemonFlags(
			&ucli.StringFlag{Name: "rule", Usage: "the rule to start (its name in the policy)"},
			&ucli.DurationFlag{Name: "negotiation-timeout", Value: 30 * time.Second, Usage: "how long charon may try each SA"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "do not show charon's log"},
		),
		Action: withRules(func(c *ucli.Context, ctx context.Context, s *session, conns []assign.RecordConn) error {
			live, err := s.client.ListSAs(ctx, vici.SAFilter{})
			if err != nil {
				return err
			}
			w := c.App.Writer
			var failed []string
			fail := func(conn assign.RecordConn, child, why string) {
				msg := fmt.Sprintf("rule %q (%s): %s", conn.Origin.Rule, child, why)
				fmt.Fprintln(c.App.ErrWriter, msg)
				failed = append(failed, msg)
			}
			for _, conn := range conns {
				if conn.Origin.Action != "negotiate" || conn.Origin.RuleIndex < 0 {
					continue
				}
				for _, ch := range conn.Children {
					if sa, csa, ok := findChild(live, conn.Name, ch.Name); ok {
						if why := narrowed(conn, ch.Name, sa, csa); why != "" {
							fail(conn, ch.Name, why)
							continue
						}
						fmt.Fprintf(w, "rule %q: %s (%s) is already up\n", conn.Origin.Rule, ch.Name, ch.Summary)
						continue
					}
					fmt.Fprintf(w, "Negotiating IP security: rule %q, %s (%s) with %s\n", conn.Origin.Rule, ch.Name, ch.Summary, conn.Origin.Peer)
					var logf func(vici.LogLine)
					duplicate := false
					logf = func(l vici.LogLine) {
						if strings.Contains(l.Message, "due to existing duplicate") {
							duplicate = true
						}
						if !c.Bool("quiet") {
							fmt.Fprintf(w, "    %s\n", l)
						}
					}
					err := s.client.Initiate(ctx, vici.InitiateRequest{IKE: conn.Name, Child: ch.Name, Timeout: c.Duration("negotiation-timeout")}, logf)
					if err != nil && duplicate {
						fmt.Fprintf(w, "rule %q: %s: an SA for the same traffic is already up\n", conn.Origin.Rule, ch.Name)
						continue
					}
					if err != nil {
						fail(conn, ch.Name, explain(err)+ourProposals(err, conn, ch.Name))
						continue
					}
					after, err := s.client.ListSAs(ctx, vici.SAFilter{IKE: conn.Name})
					if err == nil {
						if sa, csa, ok := findChild(after, conn.Name, ch.Name); ok {
							if why := narrowed(conn, ch.Name, sa, csa); why != "" {
								fail(conn, ch.Name, why)
								continue
							}
						}
					}
					fmt.Fprintf(w, "rule %q: %s established\n", conn.Origin.Rule, ch.Name)
				}
			}
			if len(failed) > 0 {
				return &exitError{code: ExitFailure, err: fmt.Errorf("%d of the SAs could not be established", len(failed))}
			}
			return nil
		}),
	}
}

// findChild returns the newest INSTALLED CHILD_SA of a child config.
func findChild(sas []vici.IKESA, conn, child string) (vici.IKESA, vici.ChildSA, bool) {
	var best vici.ChildSA
	var bestSA vici.IKESA
	found := false
	for _, sa := range sas {
		if sa.Name != conn {
			continue
		}
		for _, ch := range sa.Children {
			if ch.Name == child && ch.State == "INSTALLED" && (!found || ch.UniqueID > best.UniqueID) {
				best, bestSA, found = ch, sa, true
			}
		}
	}
	return bestSA, best, found
}

// narrowed compares an established CHILD_SA's traffic selectors with the
// ones swanmgr configured. charon accepts any non-empty intersection of
// the two sides' filters, so a peer whose filters do not mirror ours may
// give an SA that carries none of the intended traffic.
func narrowed(conn assign.RecordConn, child string, sa vici.IKESA, ch vici.ChildSA) string {
	body := conn.Body.Child(child)
	if body == nil {
		return ""
	}
	local, _ := netip.ParseAddr(sa.LocalHost)
	remote, _ := netip.ParseAddr(sa.RemoteHost)
	same := func(key string, host netip.Addr, got []string) (bool, string) {
		want, err := body.Selectors(key, host)
		if err != nil {
			return true, ""
		}
		var wantS []string
		for _, t := range want {
			wantS = append(wantS, t.String())
		}
		var gotS []string
		for _, s := range got {
			t, err := render.ParseTS(s)
			if err != nil {
				return true, ""
			}
			gotS = append(gotS, t.String())
			match := false
			for _, w := range want {
				match = match || w.Equal(t)
			}
			if !match {
				return false, fmt.Sprintf("%s instead of %s", strings.Join(gotS, ","), strings.Join(wantS, ","))
			}
		}
		return len(got) == len(want), fmt.Sprintf("%s instead of %s", strings.Join(gotS, ","), strings.Join(wantS, ","))
	}
	if ok, d := same("local_ts", local, ch.LocalTS); !ok {
		return fmt.Sprintf("the peer's filters do not mirror yours: check for reversed addresses or ports (the SA came up narrowed to local %s; it does not carry this filter's traffic)", d)
	}
	if ok, d := same("remote_ts", remote, ch.RemoteTS); !ok {
		return fmt.Sprintf("the peer's filters do not mirror yours: check for reversed addresses or ports (the SA came up narrowed to remote %s; it does not carry this filter's traffic)", d)
	}
	return ""
}

// ourProposals adds, to a "no common security method" failure, what this
// side proposed. The peer's proposals never reach the initiator (it only
// gets NO_PROPOSAL_CHOSEN); the peer's log has them.
func ourProposals(err error, conn assign.RecordConn, child string) string {
	var ne *vici.NegotiationError
	if !errors.As(err, &ne) || ne.Reason != vici.ReasonNoProposal || conn.Body == nil {
		return ""
	}
	var parts []string
	if l := conn.Body.List("proposals"); l != nil {
		parts = append(parts, "IKE "+strings.Join(l, ", "))
	}
	c := conn.Body.Child(child)
	for _, k := range []string{"esp_proposals", "ah_proposals"} {
		if l := c.List(k); l != nil {
			parts = append(parts, strings.ToUpper(strings.TrimSuffix(k, "_proposals"))+" "+strings.Join(l, ", "))
		}
	}
	return fmt.Sprintf("; you proposed %s; the peer's own proposals are only in its log (\"received proposals\" / \"configured proposals\")", strings.Join(parts, "; "))
}

// explain words an initiate failure for an operator.
func explain(err error) string {
	var ne *vici.NegotiationError
	if errors.As(err, &ne) {
		s := ne.Explain()
		if ne.Evidence != "" {
			s += fmt.Sprintf(" (charon: %s)", ne.Evidence)
		}
		return s
	}
	return err.Error()
}

func terminateCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "terminate",
		Usage: "close the SAs of a rule (all rules without --rule); trap rules come back on the next matching packet",
		Flags: daemonFlags(&ucli.StringFlag{Name: "rule", Usage: "the rule to stop"}),
		Action: withRules(func(c *ucli.Context, ctx context.Context, s *session, conns []assign.RecordConn) error {
			live, err := s.engine.Daemon.LiveSAs(ctx)
			if err != nil {
				return err
			}
			n := 0
			var errs []error
			sort.Slice(live, func(i, j int) bool { return live[i].UniqueID < live[j].UniqueID })
			for _, conn := range conns {
				for _, sa := range live {
					if sa.Conn != conn.Name {
						continue
					}
					if err := s.engine.Daemon.TerminateIKE(ctx, sa.UniqueID); err != nil {
						errs = append(errs, fmt.Errorf("rule %q: IKE_SA #%d: %w", conn.Origin.Rule, sa.UniqueID, err))
						continue
					}
					n++
					fmt.Fprintf(c.App.Writer, "rule %q: closed IKE_SA %s #%d with %s (%d CHILD_SAs)\n", conn.Origin.Rule, sa.Conn, sa.UniqueID, sa.Remote, len(sa.Children))
				}
			}
			if n == 0 && len(errs) == 0 {
				fmt.Fprintln(c.App.Writer, "no SAs to close")
			}
			return errors.Join(errs...)
		}),
	}
}

// withRules runs fn with a session to charon and the recorded connections
// of the --rule flag's rule (all rules when it is empty).
func withRules(fn func(c *ucli.Context, ctx context.Context, s *session, conns []assign.RecordConn) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		ctx, s, done, err := connect(c)
		if err != nil {
			return err
		}
		defer done()
		conns, _, err := assignedConns(s, c.String("rule"))
		if err != nil {
			return err
		}
		return fn(c, ctx, s, conns)
	}
}
