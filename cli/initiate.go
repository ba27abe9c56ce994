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
	"github.com/swanmgr/swanmgr/diagnose"
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
	if rec == nil || (len(rec.Conns) == 0 && rec.Policy == "") {
		return nil, nil, fmt.Errorf("swanmgr has assigned no policy to charon at %s: run swanmgr apply first", s.socket)
	}
	if len(rec.Conns) == 0 {
		// Assigned, with nothing for charon: block and permit rules on
		// libipsec are the guard's alone.
		if rule != "" {
			return nil, nil, usageErrorf("policy %q has no connection in charon, so none for rule %q: its rules are enforced by the nftables guard alone", rec.Policy, rule)
		}
		return nil, rec, nil
	}
	if err := s.engine.Store.LoadBodies(rec); err != nil {
		return nil, nil, err
	}
	var out []assign.RecordConn
	var rules []string
	for _, c := range rec.Conns {
		for _, r := range render.Rules(c.Origin, c.Children) {
			if !contains(rules, r) {
				rules = append(rules, r)
			}
		}
		if rule == "" {
			out = append(out, c)
			continue
		}
		// All negotiate rules to one peer share its connection: keep
		// the children of the rule asked for.
		var kids []render.ChildOrigin
		for _, co := range c.Children {
			if strings.EqualFold(co.RuleOf(c.Origin), rule) {
				kids = append(kids, co)
			}
		}
		if len(kids) > 0 || (len(c.Children) == 0 && strings.EqualFold(c.Origin.Rule, rule)) {
			c.Children = kids
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
			fail := func(rule, child, why string) {
				msg := fmt.Sprintf("rule %q (%s): %s", rule, child, why)
				fmt.Fprintln(c.App.ErrWriter, msg)
				failed = append(failed, msg)
			}
			for _, conn := range conns {
				if conn.Origin.Action != "negotiate" || conn.Origin.RuleIndex < 0 {
					continue
				}
				for _, ch := range conn.Children {
					if ch.FilterIndex < 0 {
						// Not negotiated: a pass child for this computer
						// itself in a subnet rule's connection.
						continue
					}
					rule := ch.RuleOf(conn.Origin)
					if sa, csa, ok := diagnose.FindChild(live, conn.Name, ch.Name); ok {
						if why := diagnose.Narrowed(conn, ch.Name, sa, csa); why != "" {
							fail(rule, ch.Name, why)
							continue
						}
						fmt.Fprintf(w, "rule %q: %s (%s) is already up\n", rule, ch.Name, ch.Summary)
						continue
					}
					if rangePeer(conn.Origin.Peer) {
						// No one host to start with: charon negotiates
						// with each host of the range that traffic goes to.
						fmt.Fprintf(w, "rule %q: %s (%s) is negotiated with each host of %s that traffic goes to; send some to start it\n", rule, ch.Name, ch.Summary, conn.Origin.Peer)
						continue
					}
					fmt.Fprintf(w, "Negotiating IP security: rule %q, %s (%s) with %s\n", rule, ch.Name, ch.Summary, conn.Origin.Peer)
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
					if err != nil && !duplicate {
						fail(rule, ch.Name, diagnose.Failure(err, conn, ch.Name))
						continue
					}
					// Established now, or meanwhile by charon's start
					// action or the peer (the duplicate): either way, up
					// is only good news if it carries all of its traffic.
					after, err := s.client.ListSAs(ctx, vici.SAFilter{IKE: conn.Name})
					if err == nil {
						if sa, csa, ok := diagnose.FindChild(after, conn.Name, ch.Name); ok {
							if why := diagnose.Narrowed(conn, ch.Name, sa, csa); why != "" {
								fail(rule, ch.Name, why)
								continue
							}
						}
					}
					if duplicate {
						fmt.Fprintf(w, "rule %q: %s: an SA for the same traffic is already up\n", rule, ch.Name)
						continue
					}
					fmt.Fprintf(w, "rule %q: %s established\n", rule, ch.Name)
				}
			}
			if len(failed) > 0 {
				return &exitError{code: ExitFailure, err: fmt.Errorf("%d of the SAs could not be established", len(failed))}
			}
			return nil
		}),
	}
}

func terminateCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "terminate",
		Usage: "close the SAs of a rule (all rules without --rule); trap rules come back on the next matching packet",
		Flags: daemonFlags(&ucli.StringFlag{Name: "rule", Usage: "the rule to stop"}),
		Action: withRules(func(c *ucli.Context, ctx context.Context, s *session, conns []assign.RecordConn) error {
			qs := make([]assign.SAQuery, len(conns))
			for i, conn := range conns {
				qs[i] = assign.SAQuery{Conn: conn.Name}
			}
			live, err := s.engine.Daemon.LiveSAs(ctx, qs)
			if err != nil {
				return err
			}
			n := 0
			var errs []error
			sort.Slice(live, func(i, j int) bool { return live[i].UniqueID < live[j].UniqueID })
			for _, conn := range conns {
				mine := map[string]bool{}
				for _, co := range conn.Children {
					mine[co.Name] = true
				}
				for _, sa := range live {
					if sa.Conn != conn.Name {
						continue
					}
					if closed, partial, err := closeRuleChildren(ctx, s, sa, mine, c.String("rule")); partial {
						// The IKE_SA also carries other rules' SAs (all
						// rules to one peer share it): only this rule's go.
						if err != nil {
							errs = append(errs, fmt.Errorf("rule %q: %w", c.String("rule"), err))
						}
						for _, ch := range closed {
							n++
							fmt.Fprintf(c.App.Writer, "rule %q: closed CHILD_SA %s #%d with %s (IKE_SA #%d stays for other rules)\n", c.String("rule"), ch.Name, ch.UniqueID, sa.Remote, sa.UniqueID)
						}
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
// rangePeer reports whether a connection's peer is a subnet or %any (a
// negotiate rule to a subnet or "any" without a tunnel).
func rangePeer(p string) bool {
	if p == "%any" {
		return true
	}
	pfx, err := netip.ParsePrefix(p)
	return err == nil && !pfx.IsSingleIP()
}

// closeRuleChildren closes the CHILD_SAs of sa that belong to the rule
// (mine: its children's names) when sa also carries others; partial is
// false when the whole IKE_SA is the rule's (or no rule was named).
func closeRuleChildren(ctx context.Context, s *session, sa assign.LiveSA, mine map[string]bool, rule string) (closed []assign.LiveChild, partial bool, err error) {
	if rule == "" {
		return nil, false, nil
	}
	var ours []assign.LiveChild
	for _, ch := range sa.Children {
		if mine[ch.Name] {
			ours = append(ours, ch)
		}
	}
	if len(ours) == len(sa.Children) {
		return nil, false, nil
	}
	var errs []error
	for _, ch := range ours {
		if e := s.engine.Daemon.TerminateChild(ctx, ch.UniqueID); e != nil {
			errs = append(errs, fmt.Errorf("CHILD_SA %s #%d: %w", ch.Name, ch.UniqueID, e))
			continue
		}
		closed = append(closed, ch)
	}
	return closed, true, errors.Join(errs...)
}

func withRules(fn func(c *ucli.Context, ctx context.Context, s *session, conns []assign.RecordConn) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		ctx, s, done, err := connect(c)
		if err != nil {
			return err
		}
		defer done()
		conns, rec, err := assignedConns(s, c.String("rule"))
		if err != nil {
			return err
		}
		if len(conns) == 0 {
			fmt.Fprintf(c.App.Writer, "nothing to %s: policy %q has no connection in charon (its rules are enforced by the nftables guard alone)\n", c.Command.Name, rec.Policy)
			return nil
		}
		return fn(c, ctx, s, conns)
	}
}
