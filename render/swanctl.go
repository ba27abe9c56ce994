package render

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// SecretPlaceholder replaces secret values in swanctl.conf text unless
// WriteOptions.ShowSecrets is set.
const SecretPlaceholder = "<redacted: render --show-secrets>"

// WriteOptions tune the swanctl.conf text.
type WriteOptions struct {
	// ShowSecrets writes preshared keys as they are. Without it they are
	// replaced by SecretPlaceholder, and the text is not loadable.
	ShowSecrets bool
}

// WriteSwanctl writes the result as swanctl.conf text: connections, then
// secrets. The text holds what load-conn and load-shared would send; with
// ShowSecrets it loads into charon with `swanctl --load-all --file`.
func (r *Result) WriteSwanctl(w io.Writer, o WriteOptions) error {
	// Buffered: a policy of thousands of rules was thousands of writes
	// to a terminal or pipe.
	bw := bufio.NewWriterSize(w, 64<<10)
	ew := &errWriter{w: bw}
	ew.printf("# Rendered by swanmgr from %s: policy %q, backend %s.\n", oneLine(r.Source), r.Policy, r.Backend)
	ew.printf("# swanmgr apply loads the same settings over VICI; this text is for review\n# and for `swanctl --load-all --file`.\n")
	ew.printf("connections {\n")
	for i, c := range r.Conns {
		if i > 0 {
			ew.printf("\n")
		}
		if c.Comment != "" {
			ew.printf("    # %s\n", c.Comment)
		}
		ew.printf("    %s {\n", c.Name)
		writeSection(ew, c.Body, 2)
		ew.printf("    }\n")
	}
	ew.printf("}\n")
	if len(r.Secrets) > 0 {
		ew.printf("\nsecrets {\n")
	}
	for _, s := range r.Secrets {
		ew.printf("    # used by %s\n", strings.Join(s.Conns, ", "))
		ew.printf("    %s {\n", s.Name)
		for i, o := range s.Owners {
			ew.printf("        id-%d = %s\n", i+1, quote(o))
		}
		val := SecretPlaceholder
		if o.ShowSecrets {
			val = secretValue(s.Data.Reveal())
		}
		ew.printf("        secret = %s\n", quoteSecret(val, o.ShowSecrets))
		ew.printf("    }\n")
	}
	if len(r.Secrets) > 0 {
		ew.printf("}\n")
	}
	if len(r.Keys) > 0 {
		// swanctl.conf cannot name a private key file: swanctl loads keys
		// only from its private/ (rsa/, ecdsa/, pkcs8/) folders, and a
		// secrets.private<suffix> section is just a passphrase for one of
		// them. swanmgr apply sends the keys over VICI (load-key).
		ew.printf("\n# Private keys: swanctl loads keys only from its private/ folder (swanmgr\n# apply sends them with load-key). For `swanctl --load-all`, copy:\n")
		for _, k := range r.Keys {
			ew.printf("#   %s\n", oneLine(k.Path))
		}
	}
	if ew.err == nil {
		ew.err = bw.Flush()
	}
	return ew.err
}

// oneLine keeps free text inside a comment line.
func oneLine(s string) string { return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s) }

func writeSection(ew *errWriter, s *Section, depth int) {
	// Appended to one buffer per connection and written once: a policy of
	// thousands of rules has hundreds of thousands of lines, and fmt's
	// cost per line was a fifth of `swanmgr render`. The buffer is the
	// writer's, used again for each connection.
	ew.buf = appendSection(ew.buf[:0], s, depth)
	ew.write(ew.buf)
}

func appendSection(buf []byte, s *Section, depth int) []byte {
	if s != nil && s.packed != "" {
		return appendPackedSection(buf, s.packed, depth)
	}
	for _, it := range s.All() {
		switch {
		case it.Sec != nil:
			buf = appendOpen(buf, depth, it.Comment(), it.Key)
			buf = appendSection(buf, it.Sec, depth+1)
			buf = appendClose(buf, depth)
		case len(it.Files()) > 0:
			buf = appendAssign(buf, depth, it.Key)
			for i, f := range it.Files() {
				buf = appendListValue(buf, i, f.Path)
			}
			buf = append(buf, '\n')
		case it.IsList:
			buf = appendAssign(buf, depth, it.Key)
			for i, v := range it.List {
				buf = appendListValue(buf, i, v)
			}
			buf = append(buf, '\n')
		default:
			buf = appendAssign(buf, depth, it.Key)
			buf = append(buf, quote(it.Value)...)
			buf = append(buf, '\n')
		}
	}
	return buf
}

// appendPackedSection is appendSection of a frozen section, read from its
// frozen form as it is (All would make each item, and each subsection, for
// the call: at 10,000 connections, two thirds of writing swanctl.conf). A
// frozen section holds no files (packable).
func appendPackedSection(buf []byte, p string, depth int) []byte {
	for p != "" {
		var it packedItem
		it, p = nextPacked(p)
		switch it.kind {
		case packedSection:
			buf = appendOpen(buf, depth, it.note, it.key)
			buf = appendPackedSection(buf, it.sec, depth+1)
			buf = appendClose(buf, depth)
		case packedList:
			buf = appendAssign(buf, depth, it.key)
			for i, l := 0, it.list; l != ""; i++ {
				var v string
				v, l = packedString(l)
				buf = appendListValue(buf, i, v)
			}
			buf = append(buf, '\n')
		default:
			buf = appendAssign(buf, depth, it.key)
			buf = append(buf, quote(it.value)...)
			buf = append(buf, '\n')
		}
	}
	return buf
}

// The lines of swanctl.conf, as appendSection and appendPackedSection
// write them.

func appendIndent(buf []byte, depth int) []byte {
	for range depth {
		buf = append(buf, "    "...)
	}
	return buf
}

// appendOpen begins a subsection: its comment's line (when it has one),
// then "key {".
func appendOpen(buf []byte, depth int, comment, key string) []byte {
	if comment != "" {
		buf = appendIndent(buf, depth)
		buf = append(buf, "# "...)
		buf = append(buf, comment...)
		buf = append(buf, '\n')
	}
	buf = appendIndent(buf, depth)
	buf = append(buf, key...)
	return append(buf, " {\n"...)
}

func appendClose(buf []byte, depth int) []byte {
	return append(appendIndent(buf, depth), "}\n"...)
}

// appendAssign begins a value's line: "key = ".
func appendAssign(buf []byte, depth int, key string) []byte {
	buf = appendIndent(buf, depth)
	buf = append(buf, key...)
	return append(buf, " = "...)
}

// appendListValue appends value i of a list, after a comma but the first.
func appendListValue(buf []byte, i int, v string) []byte {
	if i > 0 {
		buf = append(buf, ", "...)
	}
	return append(buf, quote(v)...)
}

// quote writes a value as swanctl.conf needs it: bare when it is a plain
// token, otherwise double-quoted with the escapes strongSwan's settings
// lexer understands (\", \\, \n, \r, \t).
func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t,{}=#\"\\'\n\r") {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(v) + `"`
}

// secretValue encodes a preshared key so that any byte survives the
// swanctl.conf parser: plain text when safe, base64 ("0s...") otherwise.
// swanctl reads a value starting with 0x or 0s (in any case) as hex or
// base64, so such a key is encoded too.
func secretValue(s string) string {
	lower := strings.ToLower(s)
	if !strings.ContainsAny(s, "\"\\\n\r\t") && !strings.HasPrefix(lower, "0x") && !strings.HasPrefix(lower, "0s") {
		return s
	}
	return "0s" + base64.StdEncoding.EncodeToString([]byte(s))
}

func quoteSecret(v string, shown bool) string {
	if shown && strings.HasPrefix(v, "0s") {
		return v
	}
	return `"` + v + `"`
}

type errWriter struct {
	w   io.Writer
	err error
	buf []byte
}

func (e *errWriter) write(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err != nil {
		return
	}
	_, e.err = fmt.Fprintf(e.w, format, args...)
}
