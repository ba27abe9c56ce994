// Package agent is swanmgr's policy agent, the counterpart of Windows'
// IPSEC Policy Agent service: it keeps charon converged with an assigned
// policy for as long as it runs.
//
// The loop is level-triggered, like a Kubernetes controller: whatever wakes
// it — the periodic check, the VICI socket accepting again after charon
// restarted, an SA going down, the policy file or a key file it read
// changing, a reload request (SIGHUP) — it compares what charon has with
// what the policy wants and repairs the difference with the same
// minimal-change apply every other command uses (assign.Engine.Assign).
// Events only wake it; they are never the state.
//
//   - charon unreachable: dial again with capped exponential backoff, for
//     as long as it takes; when the socket accepts, the whole policy goes
//     back at once.
//   - connections or secrets gone or changed under swanmgr (a stray
//     `swanctl --load-all`, an `--unload-conn`): the next check loads them
//     again; nothing swanmgr does not own is touched.
//   - the policy file or a key file changes: re-read and re-validated; a
//     file that does not validate is refused with the usual file:line
//     problems and the last good assignment stays (and is the one restored
//     should charon restart meanwhile).
//   - rules whose SAs should be up (start action "start", the libipsec
//     backend) and are down are initiated again with exponential backoff
//     per child; each failure is logged with the reason `swanmgr initiate`
//     gives (package diagnose), never retried in a hot loop.
//
// It logs one line per event (what happened, which rules, what it did) and
// leaves the assignment in place when it stops. One agent per charon: Run
// holds the socket's agent lock (assign.Store.AgentLock) while it runs.
//
// The package does no terminal or flag handling (cli does) and builds no
// engines itself: Config.Dial hands it one, so the agent enforces exactly
// as `swanmgr apply` does.
package agent
