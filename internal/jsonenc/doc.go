// Package jsonenc appends JSON strings byte for byte as encoding/json
// writes them, for the hand-written encoders of large documents (status
// rows, swanmgr's record): quotes and backslashes escaped, control
// characters as \b, \f, \n, \r, \t or \u00XX, invalid UTF-8 as \ufffd,
// U+2028 and U+2029 escaped, and with html also <, > and & (as
// json.Encoder does by default).
package jsonenc
