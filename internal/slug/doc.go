// Package slug makes the names swanmgr derives from an operator's rule
// names: render's connection, child and secret names and the guard's
// counter names. Both must agree byte for byte with what earlier
// versions derived (a changed name reloads a connection and resets a
// counter), so there is one function, tested against the regular
// expression it replaced.
package slug
