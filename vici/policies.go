package vici

import (
	"context"
	"fmt"
	"strings"

	govici "github.com/strongswan/govici/vici"
)

// Policy is a trap, pass or drop policy charon has installed for a
// CHILD_SA config (list-policies), without an SA behind it.
type Policy struct {
	IKE      string // the connection ("" for shunts loaded alone)
	Child    string
	Mode     string // TUNNEL, TRANSPORT (traps), PASS, DROP
	LocalTS  []string
	RemoteTS []string
}

// ListPolicies lists the trap policies charon has installed (and pass and
// drop shunts): a child whose trap could not be installed (a DNS name
// that does not resolve, say) is missing here although its connection is
// loaded. A child name other than "" lists only that CHILD_SA config's
// policies (charon's child filter).
func (c *Client) ListPolicies(ctx context.Context, child string) ([]Policy, error) {
	ctx, cancel, added := c.withDeadline(ctx)
	defer cancel()
	req := govici.NewMessage()
	for _, k := range []string{"trap", "pass", "drop"} {
		if err := req.Set(k, "yes"); err != nil {
			return nil, fmt.Errorf("list-policies: %w", err)
		}
	}
	if child != "" {
		if err := req.Set("child", child); err != nil {
			return nil, fmt.Errorf("list-policies: %w", err)
		}
	}
	// Each message is read as it comes, so that charon's answer is not
	// held whole (thousands of messages) beside what is made of it.
	var (
		out     []Policy
		readErr error
	)
	if _, err := c.stream(ctx, "list-policies", "", "list-policy", req, streamBuffer, added, func(m *govici.Message) {
		if readErr != nil {
			return
		}
		ps, err := sections(m, parsePolicy)
		if err != nil {
			readErr = fmt.Errorf("list-policies: %w", err)
			return
		}
		out = append(out, ps...)
	}); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	return out, nil
}

func parsePolicy(name string, m *govici.Message) (Policy, error) {
	f := &fields{m: m, path: fmt.Sprintf("policy %q", name)}
	p := Policy{IKE: f.str("ike"), Child: f.str("child"), Mode: f.str("mode"), LocalTS: f.list("local-ts"), RemoteTS: f.list("remote-ts")}
	if p.Child == "" {
		// Keyed <ike>/<child> (traps) or <child> (shunts).
		if ike, child, ok := strings.Cut(name, "/"); ok {
			p.IKE, p.Child = ike, child
		} else {
			p.Child = name
		}
	}
	return p, f.err
}
