package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// Confirm-or-revert (docs/commands.md): `apply --confirm D` and
// `unassign --confirm D` record the change as pending before they make
// it and start a detached watchdog (this program, `confirm-watch`) that
// puts the previous assignment back with the normal minimal-change apply
// unless `swanmgr confirm` runs in time. The operator's session dying
// does not stop the watchdog; `swanmgr revert` reverts at once.

var confirmFlag = &ucli.DurationFlag{
	Name:  "confirm",
	Usage: "keep the change only if `swanmgr confirm` runs within this long; otherwise the previous assignment is restored (soft: no restart; survives this session dying)",
}

// ErrPendingConfirmation is returned by apply and unassign without
// --confirm while a change waits for confirmation.
var ErrPendingConfirmation = errors.New("a change is pending confirmation")

// checkPending refuses a change while another waits for confirmation,
// unless this one says --confirm too (then it extends the deadline and
// keeps the point to revert to).
func checkPending(c *ucli.Context, store assign.Store, sock string) error {
	conf, err := store.LoadConfirmation(sock)
	if err != nil || conf == nil || c.IsSet(confirmFlag.Name) {
		return err
	}
	return fmt.Errorf("%w until %s (%s of policy %q): run swanmgr confirm to keep it, swanmgr revert to go back, or add --confirm to this command to extend the deadline",
		ErrPendingConfirmation, conf.Deadline.Format(time.RFC3339), conf.Command, conf.Policy)
}

// pendingChecked runs, in tests, right after checkPending let a change
// through.
var pendingChecked func()

// refusePending guards a change made without --confirm, under the lock:
// checkPending read the state before the lock was taken, and an apply
// --confirm that recorded its confirmation meanwhile and then waited for
// the lock would otherwise find this change made under it, and its revert
// take this change away too (its point to revert to was read before).
func refusePending(c *ucli.Context, s *session) {
	if pendingChecked != nil {
		pendingChecked()
	}
	if c.IsSet(confirmFlag.Name) {
		return
	}
	store, sock := s.engine.Store, s.socket
	s.engine.Precondition = func() error {
		if err := checkPending(c, store, sock); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
		return nil
	}
}

// beginConfirm records the pending confirmation of a change about to be
// made and starts the watchdog; it returns the confirmation and whether it
// is new (an existing one is extended).
func beginConfirm(c *ucli.Context, s *session, command, policy string, data []byte) (*assign.Confirmation, bool, error) {
	d := c.Duration(confirmFlag.Name)
	if d <= 0 {
		return nil, false, usageErrorf("--confirm needs a positive duration, e.g. --confirm 2m")
	}
	store := s.engine.Store
	now := time.Now().UTC()
	conf, err := store.LoadConfirmation(s.socket)
	if err != nil {
		return nil, false, err
	}
	if conf != nil {
		conf.Deadline, conf.Timeout, conf.Command, conf.Policy, conf.PolicyHash = now.Add(d), d.String(), command, policy, policyHash(data)
		if !watchdogAlive(conf.Watchdog) {
			// Gone (a reboot without the agent, a killed process): the
			// extended change would otherwise never revert.
			pid, err := startWatchdog(c, s.socket, store.Dir, conf.ID)
			if err != nil {
				return nil, false, fmt.Errorf("--confirm: the watchdog of the pending change is gone, and starting one failed: %w; nothing was changed", err)
			}
			conf.Watchdog = pid
		}
		s.engine.Precondition = stillPending(store, s.socket, conf)
		return conf, false, store.SaveConfirmation(s.socket, conf)
	}
	rec, err := store.Load(s.socket)
	if err != nil {
		return nil, false, err
	}
	var prev *assign.Snapshot
	if rec != nil && len(rec.Conns) > 0 {
		if prev, err = store.LoadSnapshot(s.socket); err != nil {
			return nil, false, err
		}
		if prev == nil {
			return nil, false, fmt.Errorf("--confirm: the current assignment (policy %q) cannot be restored faithfully: swanmgr keeps no copy of a policy whose preshared keys are written inline (it never writes secrets to disk), nor of one applied by an older swanmgr; move its keys to secret_file and apply it once without --confirm", rec.Policy)
		}
	}
	conf = &assign.Confirmation{ID: assign.NewConfirmationID(), Command: command, Started: now, Deadline: now.Add(d),
		Timeout: d.String(), Previous: prev, Policy: policy, PolicyHash: policyHash(data)}
	if err := store.SaveConfirmation(s.socket, conf); err != nil {
		return nil, false, err
	}
	pid, err := startWatchdog(c, s.socket, store.Dir, conf.ID)
	if err != nil {
		store.RemoveConfirmation(s.socket)
		return nil, false, fmt.Errorf("--confirm: starting the watchdog that would revert: %w; nothing was changed", err)
	}
	conf.Watchdog = pid
	s.engine.Precondition = stillPending(store, s.socket, conf)
	return conf, true, store.SaveConfirmation(s.socket, conf)
}

// stillPending is the Precondition of a change made with --confirm: its
// confirmation was recorded before the lock was taken, and a revert that
// held the lock meanwhile ends it (an extended one too); the change must
// not then be made with nothing left to revert it.
func stillPending(store assign.Store, sock string, conf *assign.Confirmation) func() error {
	return func() error {
		if ok, err := stillThePending(store, sock, conf); err != nil || ok {
			return err
		}
		return fmt.Errorf("--confirm: the change pending confirmation was confirmed or reverted while this command waited for the lock (see swanmgr status); nothing was changed: run it again")
	}
}

// stillThePending says whether conf is still the pending confirmation
// (not confirmed, reverted or replaced since it was read).
func stillThePending(store assign.Store, sock string, conf *assign.Confirmation) (bool, error) {
	cur, err := store.LoadConfirmation(sock)
	if err != nil {
		return false, err
	}
	return cur != nil && cur.ID == conf.ID, nil
}

// armAfterAgent is apply --confirm of a file charon already has because
// the agent assigned it (the operator edited the agent's file and the
// agent was quicker than this command): when the agent's apply of exactly
// this text is the last change, the assignment it replaced becomes the
// point to revert to, instead of nothing to confirm. Under the lock, so
// that no apply comes between the check and the confirmation.
func armAfterAgent(ctx context.Context, s *session, conf *assign.Confirmation, data []byte) (*assign.Replaced, error) {
	store := s.engine.Store
	unlock, err := store.Lock(ctx, s.socket)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if ok, err := stillThePending(store, s.socket, conf); err != nil || !ok {
		return nil, err
	}
	snap, err := store.LoadSnapshot(s.socket)
	if err != nil || snap == nil || !bytes.Equal(snap.Data, data) {
		return nil, err
	}
	r, err := store.LoadReplaced(s.socket)
	if err != nil || r == nil || !r.Agent || r.By != assign.SnapshotHash(snap) {
		return nil, err
	}
	conf.Previous = r.Snapshot
	if err := store.SaveConfirmation(s.socket, conf); err != nil {
		return nil, err
	}
	// Taken: a later apply --confirm of the same file, once this one is
	// confirmed, has nothing to confirm again.
	return r, store.RemoveReplaced(s.socket)
}

// abandonConfirm undoes beginConfirm when the change did not happen.
func abandonConfirm(s *session, conf *assign.Confirmation, isNew bool) {
	if conf != nil && isNew {
		s.engine.Store.RemoveConfirmation(s.socket)
	}
}

// printConfirmHint says how to keep the change and when it reverts.
func printConfirmHint(w io.Writer, s *session, conf *assign.Confirmation) {
	back := "nothing assigned (unassign)"
	if conf.Previous != nil {
		back = "the previous assignment from " + conf.Previous.Path
	}
	fmt.Fprintf(w, "pending confirmation: run `swanmgr confirm --socket %s` before %s (within %s), or charon gets %s back\n",
		s.socket, conf.Deadline.Local().Format("15:04:05"), time.Until(conf.Deadline).Round(time.Second), back)
}

// startWatchdog starts `swanmgr confirm-watch` in a session of its own,
// detached from this one, logging to the state folder.
func startWatchdog(c *ucli.Context, sock, stateDir, id string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	logPath := assign.Store{Dir: stateDir}.ConfirmLogPath(sock)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "confirm-watch", "--socket", sock, "--state-dir", stateDir, "--id", id)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}

func confirmCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "confirm",
		Usage:     "keep the change an apply or unassign --confirm made (stops the revert)",
		ArgsUsage: " ",
		Flags:     []ucli.Flag{socketFlag, stateDirFlag},
		Action: func(c *ucli.Context) error {
			sock, err := socketPath(c)
			if err != nil {
				return err
			}
			store := assign.Store{Dir: c.String(stateDirFlag.Name)}
			// Under the lock: a revert that has begun finishes first, and
			// then there is nothing to confirm.
			ctx, cancel := context.WithTimeout(c.Context, 2*time.Minute)
			defer cancel()
			unlock, err := store.Lock(ctx, sock)
			if err != nil {
				return err
			}
			defer unlock()
			conf, err := store.LoadConfirmation(sock)
			if err != nil {
				return err
			}
			if conf == nil {
				if r, _ := store.LoadReverted(sock); r != nil && time.Since(r.At) < time.Hour {
					return fmt.Errorf("nothing to confirm: the change was reverted at %s (%s)", r.At.Local().Format(time.RFC3339), r.Reason)
				}
				return fmt.Errorf("nothing is pending confirmation at %s", sock)
			}
			if err := store.RemoveConfirmation(sock); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "confirmed: the %s of policy %q stays (it would have reverted at %s)\n", conf.Command, conf.Policy, conf.Deadline.Local().Format(time.RFC3339))
			return nil
		},
	}
}

func revertCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "revert",
		Usage:     "revert now the change an apply or unassign --confirm made",
		ArgsUsage: " ",
		Flags:     daemonFlags(),
		Action: func(c *ucli.Context) error {
			sock, err := socketPath(c)
			if err != nil {
				return err
			}
			store := assign.Store{Dir: c.String(stateDirFlag.Name)}
			conf, err := store.LoadConfirmation(sock)
			if err != nil {
				return err
			}
			if conf == nil {
				return fmt.Errorf("nothing is pending confirmation at %s", sock)
			}
			ctx, cancel := withTimeout(c)
			defer cancel()
			return revert(ctx, c, sock, store, conf, "swanmgr revert", c.App.Writer)
		},
	}
}

// confirmWatchCommand is the watchdog: it waits for the deadline of one
// pending confirmation and reverts unless it was confirmed (or replaced).
// A deadline passed while it could not reach charon is honoured as soon
// as charon answers.
func confirmWatchCommand() *ucli.Command {
	return &ucli.Command{
		Name:   "confirm-watch",
		Usage:  "(internal) revert a change pending confirmation at its deadline",
		Hidden: true,
		Flags:  []ucli.Flag{socketFlag, stateDirFlag, &ucli.StringFlag{Name: "id", Required: true}},
		Action: func(c *ucli.Context) error {
			sock, err := socketPath(c)
			if err != nil {
				return err
			}
			store := assign.Store{Dir: c.String(stateDirFlag.Name)}
			id := c.String("id")
			logf := func(format string, args ...any) {
				fmt.Fprintf(c.App.ErrWriter, "%s swanmgr confirm-watch: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
			}
			logf("watching the change pending confirmation %s at %s", id, sock)
			for {
				conf, err := store.LoadConfirmation(sock)
				if err != nil {
					logf("%v", err)
				}
				if err == nil && (conf == nil || conf.ID != id) {
					logf("confirmed or replaced: nothing to revert")
					return nil
				}
				if conf != nil && !time.Now().Before(conf.Deadline) {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					err := revert(ctx, c, sock, store, conf, "not confirmed within "+conf.Timeout, c.App.ErrWriter)
					cancel()
					if err == nil || errors.Is(err, errConfirmedMeanwhile) {
						return nil
					}
					logf("revert failed, trying again: %v", err)
				}
				wait := time.Second
				if conf != nil {
					if d := time.Until(conf.Deadline); d > 0 && d < wait {
						wait = d
					}
				}
				select {
				case <-c.Context.Done():
					logf("stopped before the deadline; the next swanmgr agent start or confirm-watch reverts if it passes")
					return nil
				case <-time.After(wait):
				}
			}
		},
	}
}

var errConfirmedMeanwhile = errors.New("confirmed meanwhile")

// policyHash identifies a policy file's content ("" for none).
func policyHash(data []byte) string {
	if data == nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// watchdogAlive reports whether pid is a running confirm-watch.
func watchdogAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "confirm-watch")
}

// agentHold is the agent's Hold: while a change made with --confirm is
// pending the agent does not assign its file (it would assign it over the
// change being tried), it only keeps charon at the current assignment; when the deadline has passed and no
// watchdog is left (the machine rebooted, the watchdog was killed), the
// agent reverts itself — it owns the timer then. After a revert, the
// agent does not assign the very file that was reverted until it changes.
func agentHold(c *ucli.Context, sock string, store assign.Store, policyFile string, log io.Writer) func(ctx context.Context) string {
	return func(ctx context.Context) string {
		conf, err := store.LoadConfirmation(sock)
		if err != nil {
			return ""
		}
		if conf != nil && !time.Now().Before(conf.Deadline) && !watchdogAlive(conf.Watchdog) {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := revert(rctx, c, sock, store, conf, "not confirmed within "+conf.Timeout, log)
			cancel()
			if err != nil && !errors.Is(err, errConfirmedMeanwhile) {
				fmt.Fprintf(log, "reverting the change not confirmed within %s failed (trying again): %v\n", conf.Timeout, err)
			}
			if cur, _ := store.LoadConfirmation(sock); cur != nil {
				return fmt.Sprintf("the %s of %s was not confirmed by %s; reverting it", conf.Command, conf.Policy, conf.Deadline.Local().Format(time.RFC3339))
			}
			return agentRevertedHold(store, sock, policyFile)
		}
		return heldFor(store, sock, policyFile, conf)
	}
}

// agentHeld is agentHold's check without its actions, for the agent's
// engine to make again under the apply lock: a change made with --confirm
// after agentHold was asked stops the agent's apply of its file.
func agentHeld(sock string, store assign.Store, policyFile string) func() string {
	return func() string {
		conf, err := store.LoadConfirmation(sock)
		if err != nil {
			return ""
		}
		return heldFor(store, sock, policyFile, conf)
	}
}

// heldFor is why the agent holds off with conf pending (nil: none).
func heldFor(store assign.Store, sock, policyFile string, conf *assign.Confirmation) string {
	if conf == nil {
		return agentRevertedHold(store, sock, policyFile)
	}
	return fmt.Sprintf("the %s of %s is pending confirmation until %s (swanmgr confirm keeps it; otherwise it reverts)", conf.Command, conf.Policy, conf.Deadline.Local().Format(time.RFC3339))
}

func agentRevertedHold(store assign.Store, sock, policyFile string) string {
	r, err := store.LoadReverted(sock)
	if err != nil || r == nil || r.RejectedHash == "" {
		return ""
	}
	data, err := model.ReadFile(policyFile)
	if err != nil || policyHash(data) != r.RejectedHash {
		return ""
	}
	return fmt.Sprintf("%s is the change reverted at %s (%s): the previous assignment stays until the file changes", policyFile, r.At.Local().Format(time.RFC3339), r.Reason)
}

// revert assigns the previous assignment of a pending confirmation again
// (or unassigns when there was none), under the lock and only if the
// confirmation is still pending then, and notes the revert for status.
func revert(ctx context.Context, c *ucli.Context, sock string, store assign.Store, conf *assign.Confirmation, reason string, w io.Writer) error {
	s, err := newSession(ctx, sock, store.Dir, c.App.Metadata)
	if err != nil {
		return err
	}
	defer s.Close()
	s.engine.Precondition = func() error {
		if ok, err := stillThePending(store, sock, conf); err != nil || ok {
			return err
		}
		return errConfirmedMeanwhile
	}
	note := &assign.Reverted{At: time.Now().UTC(), Reason: reason, Policy: conf.Policy, RejectedHash: conf.PolicyHash}
	// The bookkeeping under the same hold of the lock as the change: no
	// agent assigns the rejected file, no confirm says "stays", no apply
	// --confirm extends the confirmation, between the revert and its note.
	// The note first: a crash between the two leaves the confirmation
	// pending and the revert is made again, never the rejected file
	// unnoted and unconfirmed.
	s.engine.Afterward = func(err error) error {
		if err != nil {
			note.Error = err.Error()
			return store.SaveReverted(sock, note)
		}
		if err := store.SaveReverted(sock, note); err != nil {
			return err
		}
		return store.RemoveConfirmation(sock)
	}
	prev := conf.Previous
	if prev == nil {
		rep, err := s.engine.Unassign(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "reverted (%s): unassigned, %d connections unloaded\n", reason, rep.UnloadConn)
	} else {
		backend, err := s.backend(ctx, c)
		if err != nil {
			return err
		}
		in := assign.Inputs{PolicyFile: prev.Path, Policy: prev.Data, Insecure: prev.Insecure}
		vo := validateOptionsFor(prev.Insecure)
		// The guard before, to count the rules it alone enforces; read
		// under the revert's lock, in prepare.
		var oldGuard *guard.Ruleset
		var l *loaded
		rep, _, err := s.engine.Assign(ctx, in, string(backend), func() (*render.Result, assign.Inputs, error) {
			if rec, err := store.Load(sock); err == nil {
				oldGuard, _ = store.LoadGuard(rec)
			}
			var err error
			if l, err = loadPolicyDataTo(io.Discard, backend, prev.Path, prev.Data, vo); err != nil {
				return nil, in, fmt.Errorf("the previous policy from %s: %w", prev.Path, err)
			}
			in.Read = l.assigned.Inputs
			in.Restorable = !l.assigned.InlineSecrets()
			l.assigned = nil // as in runApply
			return l.result, in, nil
		})
		if err != nil {
			return err
		}
		changed := 0
		if rep != nil {
			changed = len(revertedRules(rep.Plan, oldGuard, l.result.Guard))
		}
		fmt.Fprintf(w, "reverted (%s): policy from %s assigned again, %s changed back\n", reason, prev.Path, plural(changed, "rule"))
	}
	return nil
}

// revertedRules names the rules a revert changed: those of connections
// loaded, changed or removed, and those only the guard enforces whose
// guard changed (a block rule on libipsec has no connection).
func revertedRules(p *assign.Plan, oldGuard, newGuard *guard.Ruleset) []string {
	var names []string
	for _, r := range p.SortedRules() {
		if r.Change != assign.Unchanged && !slices.Contains(names, r.Rule) {
			names = append(names, r.Rule)
		}
	}
	for _, name := range guard.ChangedRules(oldGuard, newGuard) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}
