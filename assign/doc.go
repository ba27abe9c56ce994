// Package assign makes an assigned policy what charon enforces, the way
// Windows' "Assign" did, safely on a live gateway.
//
// It compares the rendered policy (render.Result) with what the daemon
// reports (get-conns, get-shared) and with swanmgr's own record of what it
// loaded before (Record), and computes a Plan: per connection and per rule,
// added, changed, removed or unchanged. Apply carries the plan out:
//
//   - ownership: only connections and secrets in swanmgr's record are ever
//     changed or unloaded; a name charon already has that swanmgr did not
//     load is a conflict, never overwritten;
//   - minimal change: an unchanged connection is not sent again (charon
//     re-runs a connection's start actions on every load-conn), so its SAs
//     keep their unique ids;
//   - all or nothing: connections are loaded first; if charon rejects one,
//     the previous bodies (kept in the record) are loaded again and added
//     connections unloaded, before anything is removed;
//   - trust the daemon: a connection the record lists but charon does not
//     have (it restarted) is loaded again;
//   - nothing left unowned: what an apply is about to load is noted first,
//     so that a run killed half-way still owns it and the next one cleans up;
//   - one at a time: a lock file serializes concurrent applies per socket.
//
// Secrets go to charon over VICI only. The record on disk holds connection
// settings, secret ids and owners, never secret values.
package assign
