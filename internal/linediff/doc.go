// Package linediff is the line diff golden-file tests print when what a
// package produced is not what the file holds: lines only in want marked
// "-", only in got "+", three common lines of context around each change.
package linediff
