package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/model"
)

// The machine-readable result of plan, apply and unassign: one JSON
// document (docs/apply-json.md is its contract), written also when the
// command fails. Configuration tools (the Ansible collection in ansible/)
// read it instead of the text. It names connections, secrets and keys,
// never a secret's value.

// ResultSchemaVersion is the schema_version of the document.
const ResultSchemaVersion = 1

var resultOutputFlag = &ucli.StringFlag{
	Name:    "output",
	Aliases: []string{"o"},
	Value:   "text",
	Usage:   "text, or json: one document, also on failure (docs/apply-json.md)",
}

// resultDoc is the document.
type resultDoc struct {
	SchemaVersion int    `json:"schema_version"`
	Command       string `json:"command"`
	Socket        string `json:"socket"`
	// Policy, Source, Backend: nil when not known (the policy could not
	// be read, unassign of nothing).
	Policy   *string   `json:"policy"`
	Source   *string   `json:"source"`
	Backend  *string   `json:"backend"`
	Changed  bool      `json:"changed"`
	UpToDate bool      `json:"up_to_date"`
	Rules    []ruleDoc `json:"rules"`
	Conns    namesDoc  `json:"connections"`
	Secrets  namesDoc  `json:"secrets"`
	Teardown []saDoc   `json:"teardown"`
	Guard    *guardDoc `json:"guard"`
	Warnings []string  `json:"warnings"`
	// Unverified counts unchanged connections found in charon by name
	// only (over assign.CompareAllUpTo, without --refresh).
	Unverified int       `json:"unverified"`
	Error      *errorDoc `json:"error"`
}

type ruleDoc struct {
	Rule   string    `json:"rule"`
	Action string    `json:"action"`
	Conns  []connDoc `json:"connections"`
}

type connDoc struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	// CharonLacked: the record lists it and charon does not have it
	// (ConnPlan.Restore).
	CharonLacked    bool     `json:"charon_lacked"`
	ChangedChildren []string `json:"changed_children"`
	IKEChanged      bool     `json:"ike_changed"`
}

type namesDoc struct {
	Loaded   []string `json:"loaded"`
	Unloaded []string `json:"unloaded"`
	// Kept: secrets charon has with the same value, not sent again
	// (secrets only).
	Kept []string `json:"kept"`
}

type saDoc struct {
	Rule       string     `json:"rule"`
	Connection string     `json:"connection"`
	IKESA      uint64     `json:"ike_sa"`
	Remote     string     `json:"remote"`
	Whole      bool       `json:"whole_ike_sa"`
	ChildSAs   []childDoc `json:"child_sas"`
}

type childDoc struct {
	Name     string `json:"name"`
	UniqueID uint64 `json:"unique_id"`
}

type guardDoc struct {
	Table        string `json:"table"`
	RulesGuarded int    `json:"rules_guarded"`
	Entries      int    `json:"entries"`
	// nil: not known (see docs/apply-json.md).
	EntriesAdded   *int  `json:"entries_added"`
	EntriesRemoved *int  `json:"entries_removed"`
	Drift          *bool `json:"drift"`
	Removed        bool  `json:"removed"`
}

type errorDoc struct {
	Message  string `json:"message"`
	Kind     string `json:"kind"`
	ExitCode int    `json:"exit_code"`
	// Rejected: charon refused part of the policy (or the apply was
	// interrupted) and what was rolled back.
	Rejected *rejectedDoc `json:"rejected"`
	// TeardownFailed: SAs that would not go down.
	TeardownFailed []string `json:"teardown_failed"`
	// PolicyLoaded: the new policy's connections are in charon although
	// the command failed (a teardown or the guard).
	PolicyLoaded bool `json:"policy_loaded"`
	// Conflicts: for a conflict, every name charon has that swanmgr did
	// not load (the message lists the first ones).
	Conflicts []string `json:"conflicts,omitempty"`
}

type rejectedDoc struct {
	What          string   `json:"what"`
	Reason        string   `json:"reason"`
	Interrupted   bool     `json:"interrupted"`
	Restored      bool     `json:"restored"`
	RestoreErrors []string `json:"restore_errors"`
}

// resultOutput is how plan, apply and unassign write their result.
type resultOutput struct {
	json bool
	doc  *resultDoc
}

func newResultOutput(c *ucli.Context, command string) (*resultOutput, error) {
	o := &resultOutput{}
	switch c.String(resultOutputFlag.Name) {
	case "text":
	case "json":
		o.json = true
	default:
		return nil, usageErrorf("--output %q: use text or json", c.String(resultOutputFlag.Name))
	}
	sock := strings.TrimPrefix(c.String(socketFlag.Name), "unix://")
	if s, err := socketPath(c); err == nil {
		sock = s
	}
	o.doc = &resultDoc{SchemaVersion: ResultSchemaVersion, Command: command, Socket: sock}
	return o, nil
}

// finish writes the document (in json mode) with err in it, and returns
// err for the exit code and the message on stderr.
func (o *resultOutput) finish(c *ucli.Context, err error) error {
	if !o.json {
		return err
	}
	d := o.doc
	if err != nil {
		// nil for plan --exit-code: changes pending is not a failure.
		d.Error = errorDocFor(err)
	}
	for _, p := range []*[]string{&d.Conns.Loaded, &d.Conns.Unloaded, &d.Secrets.Loaded, &d.Secrets.Unloaded, &d.Secrets.Kept, &d.Warnings} {
		if *p == nil {
			*p = []string{}
		}
	}
	if d.Rules == nil {
		d.Rules = []ruleDoc{}
	}
	if d.Teardown == nil {
		d.Teardown = []saDoc{}
	}
	b, merr := json.MarshalIndent(d, "", "  ")
	if merr != nil {
		return errors.Join(err, merr)
	}
	fmt.Fprintf(c.App.Writer, "%s\n", b)
	return err
}

func strp(s string) *string { return &s }

// setPolicy names the policy the document is about.
func (d *resultDoc) setPolicy(policy, source, backend string) {
	d.Policy, d.Source, d.Backend = strp(policy), strp(source), strp(backend)
}

// addWarnings appends validation problems that are only warnings.
func (d *resultDoc) addWarnings(ws []model.Problem) {
	for _, w := range ws {
		d.Warnings = append(d.Warnings, w.Error())
	}
}

// setPlan fills rules, connections, secrets and teardowns from a plan:
// what apply would do (plan) or did (apply, given its report).
func (d *resultDoc) setPlan(p *assign.Plan, rep *assign.Report) {
	d.Unverified = p.Unverified
	ruleOf := map[string]string{}
	whole := map[string]bool{}
	for _, r := range p.SortedRules() {
		rd := ruleDoc{Rule: r.Rule, Action: ruleAction(r), Conns: []connDoc{}}
		for _, c := range r.Conns {
			ruleOf[c.Name] = r.Rule
			// As assign tears down: the whole IKE_SA of a removed
			// connection or one whose IKE settings changed.
			whole[c.Name] = c.Change == assign.Removed || (c.Change == assign.Changed && c.IKEChanged && !c.Restore)
			cd := connDoc{Name: c.Name, Action: connAction(c), CharonLacked: c.Restore, ChangedChildren: c.ChangedChildren, IKEChanged: c.IKEChanged}
			if cd.ChangedChildren == nil {
				cd.ChangedChildren = []string{}
			}
			rd.Conns = append(rd.Conns, cd)
		}
		d.Rules = append(d.Rules, rd)
	}
	var warnings []string
	if rep != nil {
		warnings = rep.Warnings
	}
	for _, c := range p.Conns {
		switch {
		case c.Change == assign.Added || c.Change == assign.Changed:
			d.Conns.Loaded = append(d.Conns.Loaded, c.Name)
		case c.Change == assign.Removed && !c.Restore && !failedUnload(warnings, "connection "+c.Name):
			d.Conns.Unloaded = append(d.Conns.Unloaded, c.Name)
		}
	}
	for _, s := range p.Secrets {
		d.Secrets.Loaded = append(d.Secrets.Loaded, s.Name)
	}
	for _, s := range p.KeptSecrets {
		d.Secrets.Kept = append(d.Secrets.Kept, s.Name)
	}
	for _, id := range p.Stale {
		if !failedUnload(warnings, "secret "+id) {
			d.Secrets.Unloaded = append(d.Secrets.Unloaded, id)
		}
	}
	if rep == nil {
		for _, r := range p.Rules {
			for _, sa := range r.Teardown {
				d.Teardown = append(d.Teardown, saDocFor(r.Rule, sa, whole[sa.Conn]))
			}
		}
		return
	}
	for _, sa := range rep.Terminated {
		d.Teardown = append(d.Teardown, saDocFor(ruleOf[sa.Conn], sa, whole[sa.Conn]))
	}
	d.Warnings = append(d.Warnings, rep.Warnings...)
}

// failedUnload reports whether apply warned that what would not unload
// (assign keeps it in the record and says so in a warning).
func failedUnload(warnings []string, what string) bool {
	for _, w := range warnings {
		if strings.HasPrefix(w, "unloading ") && (strings.Contains(w, what+")") || strings.Contains(w, what+":")) {
			return true
		}
	}
	return false
}

// connAction is a connection's action: a connection charon lacked that
// comes back with the settings the record lists is drift.
func connAction(c assign.ConnPlan) string {
	if c.Restore && c.Change == assign.Added {
		return "drift"
	}
	return string(c.Change)
}

// ruleAction is a rule's action: drift when all that changes is that
// charon lacked connections of it and gets them back as they were.
func ruleAction(r assign.RulePlan) string {
	if r.Change == assign.Removed || r.Change == assign.Unchanged {
		return string(r.Change)
	}
	drift := false
	for _, c := range r.Conns {
		switch connAction(c) {
		case "unchanged":
		case "drift":
			drift = true
		default:
			return string(r.Change)
		}
	}
	if drift {
		return "drift"
	}
	return string(r.Change)
}

func saDocFor(rule string, sa assign.LiveSA, whole bool) saDoc {
	d := saDoc{Rule: rule, Connection: sa.Conn, IKESA: sa.UniqueID, Remote: sa.Remote, Whole: whole, ChildSAs: []childDoc{}}
	for _, ch := range sa.Children {
		d.ChildSAs = append(d.ChildSAs, childDoc{Name: ch.Name, UniqueID: ch.UniqueID})
	}
	return d
}

// setGuard says what happens to the guard: the new ruleset (nil: none)
// and, when known, the plan of its change.
func (d *resultDoc) setGuard(next *guard.Ruleset, g *assign.GuardPlan) {
	if next == nil && (g == nil || !g.Pending()) {
		return
	}
	gd := &guardDoc{Table: "inet " + guard.Table}
	if next != nil {
		gd.RulesGuarded, gd.Entries = len(next.Guarded()), len(next.Entries)
	}
	if g != nil {
		added, removed, drift := g.Added, g.Removed, g.Drift
		gd.EntriesAdded, gd.EntriesRemoved, gd.Drift, gd.Removed = &added, &removed, &drift, g.Remove
	}
	d.Guard = gd
}

// setUpToDate fills the document of an apply that found the policy file,
// its inputs and charon as at the last apply: nothing was read or sent.
func (d *resultDoc) setUpToDate(rec *assign.Record, rs *guard.Ruleset) {
	d.setPolicy(rec.Policy, rec.Source, rec.Backend)
	d.UpToDate = true
	idx := map[string]int{}
	for _, c := range rec.Conns {
		i, ok := idx[c.Origin.Rule]
		if !ok {
			i = len(d.Rules)
			idx[c.Origin.Rule] = i
			d.Rules = append(d.Rules, ruleDoc{Rule: c.Origin.Rule, Action: string(assign.Unchanged), Conns: []connDoc{}})
		}
		d.Rules[i].Conns = append(d.Rules[i].Conns, connDoc{Name: c.Name, Action: string(assign.Unchanged), ChangedChildren: []string{}})
	}
	d.Secrets.Kept = []string{}
	for _, s := range rec.Secrets {
		d.Secrets.Kept = append(d.Secrets.Kept, s.Name)
	}
	d.Warnings = append(d.Warnings, rec.Warnings...)
	zero, no := 0, false
	if rs != nil {
		d.Guard = &guardDoc{Table: "inet " + guard.Table, RulesGuarded: len(rs.Guarded()), Entries: len(rs.Entries),
			EntriesAdded: &zero, EntriesRemoved: &zero, Drift: &no}
	}
}

// errorDocFor describes err; nil for plan --exit-code's "changes
// pending", which is not a failure.
func errorDocFor(err error) *errorDoc {
	code := exitCode(err)
	if code == ExitChanges {
		return nil
	}
	e := &errorDoc{Message: err.Error(), Kind: "failed", ExitCode: code, TeardownFailed: []string{}}
	var (
		re *assign.RejectedError
		te *assign.TeardownError
		ge *assign.GuardError
		ce *assign.ConflictError
		pe model.Problems
	)
	switch {
	case code == ExitUsage:
		e.Kind = "usage"
	case errors.As(err, &re):
		e.Kind = "rejected"
		rd := &rejectedDoc{What: re.What, Reason: fmt.Sprint(re.Err), Interrupted: re.Interrupted, Restored: re.Restored, RestoreErrors: []string{}}
		for _, r := range re.RestoreErrs {
			rd.RestoreErrors = append(rd.RestoreErrors, r.Error())
		}
		e.Rejected = rd
	case errors.As(err, &te):
		e.Kind, e.TeardownFailed, e.PolicyLoaded = "teardown", te.Failed, true
	case errors.As(err, &ge):
		e.Kind, e.PolicyLoaded = "guard", ge.Loaded
	case errors.As(err, &ce):
		e.Kind, e.Conflicts = "conflict", ce.Names
	case errors.As(err, &pe):
		e.Kind = "invalid"
	}
	// A teardown and a guard failure can come together.
	if errors.As(err, &te) && e.Kind != "teardown" {
		e.TeardownFailed, e.PolicyLoaded = te.Failed, true
	}
	return e
}

// exitCode is the exit code runWith gives err.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case isUsage(err):
		return ExitUsage
	}
	return ExitFailure
}
