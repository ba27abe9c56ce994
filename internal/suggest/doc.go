// Package suggest holds the edit distance behind every "did you mean"
// swanmgr prints: unknown policy keys (model), unknown netsh commands
// and names (importer) and mistyped commands (cli). Each caller keeps its
// own idea of how near is near enough.
package suggest
