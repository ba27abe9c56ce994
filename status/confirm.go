package status

import (
	"fmt"
	"time"

	"github.com/swanmgr/swanmgr/assign"
)

// Confirmations gives a socket's change pending confirmation and the last
// revert (RecordReader reads them from swanmgr's state folder).
type Confirmations interface {
	Confirmation() (*assign.Confirmation, *assign.Reverted)
}

// Confirmation implements Confirmations.
func (r *RecordReader) Confirmation() (*assign.Confirmation, *assign.Reverted) {
	c, _ := r.Store.LoadConfirmation(r.Socket)
	rv, _ := r.Store.LoadReverted(r.Socket)
	return c, rv
}

// PendingConfirmation is a change made with --confirm that reverts unless
// `swanmgr confirm` runs before the deadline.
type PendingConfirmation struct {
	Command         string    `json:"command"` // apply or unassign
	Policy          *string   `json:"policy"`  // the policy file being tried; null for unassign
	Deadline        time.Time `json:"deadline"`
	DeadlineSeconds int64     `json:"deadline_in_seconds"`
	RevertsTo       *string   `json:"reverts_to"` // the previous policy file; null: unassign
	WatchdogPID     *int      `json:"watchdog_pid"`
}

// LastRevert is the last revert of a change that was not confirmed (or
// was reverted with swanmgr revert).
type LastRevert struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Policy *string   `json:"policy"` // the policy that was reverted
	Error  *string   `json:"error"`  // the revert failed: why
}

func readConfirmations(records Records, in *Input) {
	if cr, ok := records.(Confirmations); ok {
		in.Confirmation, in.Reverted = cr.Confirmation()
	}
}

func (b *builder) confirmations(st *Status) {
	if c := b.in.Confirmation; c != nil {
		p := &PendingConfirmation{Command: c.Command, Policy: optStr(c.Policy), Deadline: c.Deadline.UTC(),
			DeadlineSeconds: int64(c.Deadline.Sub(b.in.Time).Round(time.Second) / time.Second)}
		if c.Previous != nil {
			p.RevertsTo = &c.Previous.Path
		}
		if c.Watchdog > 0 {
			pid := c.Watchdog
			p.WatchdogPID = &pid
		}
		st.Confirmation = p
	}
	if r := b.in.Reverted; r != nil {
		lr := &LastRevert{At: r.At.UTC(), Reason: r.Reason, Policy: optStr(r.Policy), Error: optStr(r.Error)}
		st.LastRevert = lr
	}
}

// confirmLines are the header lines about confirm-or-revert.
func (t *tableWriter) confirmLines(st *Status) {
	if c := st.Confirmation; c != nil {
		back := "nothing assigned (unassign)"
		if c.RevertsTo != nil {
			back = "the policy from " + *c.RevertsTo
		}
		what := c.Command
		if c.Policy != nil {
			what += " of " + *c.Policy
		}
		when := fmt.Sprintf("in %s", age(c.DeadlineSeconds))
		if c.DeadlineSeconds <= 0 {
			when = "now (the deadline has passed)"
		}
		writeWrapped(&t.sb, t.color(ansiYellow+ansiBold, "Pending confirmation")+fmt.Sprintf(": the %s reverts to %s at %s, %s, unless `swanmgr confirm` runs", what, back, stamp(c.Deadline), when), 0, 2, t.width)
	}
	if r := st.LastRevert; r != nil {
		s := fmt.Sprintf("Reverted at %s: %s", stamp(r.At), r.Reason)
		if r.Policy != nil && *r.Policy != "" {
			s += fmt.Sprintf(" (%s)", *r.Policy)
		}
		if r.Error != nil {
			s += "; the revert failed: " + *r.Error
		}
		writeWrapped(&t.sb, t.color(ansiYellow, s), 0, 2, t.width)
	}
}
