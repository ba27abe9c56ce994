package assign

import (
	"bufio"
	"encoding/base64"
	"slices"
	"strconv"

	"github.com/swanmgr/swanmgr/internal/jsonenc"
	"github.com/swanmgr/swanmgr/render"
)

// The two largest state files, the record and its connection settings
// (4 MB each at 5,000 rules), are written by hand, byte for byte what
// encoding/json writes for them (TestStateJSONLikeEncodingJSON), and
// streamed: encoding/json takes about twice the time and builds each file
// whole in memory before it is written. They are read with encoding/json.

// stateWriter is a state file that writes its own bytes (the JSON files
// written by hand here, the decoded policy files).
type stateWriter interface {
	writeState(w *bufio.Writer) error
}

// bodiesFile is the record's connection settings, by connection name.
type bodiesFile map[string]*render.Section

func appendString(b []byte, s string) []byte { return jsonenc.AppendString(b, s, true) }

func appendStrings(b []byte, xs []string) []byte { return jsonenc.AppendStrings(b, xs, true) }

// appendList appends xs as a JSON array of each's encodings; nil is null.
func appendList[T any](b []byte, xs []T, each func([]byte, *T) []byte) []byte {
	if xs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = each(b, &xs[i])
	}
	return append(b, ']')
}

// appendKey appends `"key":` for a key that needs no escaping.
func appendKey(b []byte, comma bool, key string) []byte {
	if comma {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// flushAt writes b out when it has grown past a buffer's worth, and
// returns it emptied.
func flushAt(w *bufio.Writer, b []byte) ([]byte, error) {
	if len(b) < 32<<10 {
		return b, nil
	}
	_, err := w.Write(b)
	return b[:0], err
}

func appendSection(b []byte, s *render.Section) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"items":`...)
	b = appendList(b, s.All(), appendItem)
	return append(b, '}')
}

func appendItem(b []byte, it *render.Item) []byte {
	b = append(b, `{"k":`...)
	b = appendString(b, it.Key)
	if it.Value != "" {
		b = appendKey(b, true, "v")
		b = appendString(b, it.Value)
	}
	if len(it.List) > 0 {
		b = appendKey(b, true, "l")
		b = appendStrings(b, it.List)
	}
	if it.IsList {
		b = append(b, `,"il":true`...)
	}
	if it.Sec != nil {
		b = appendKey(b, true, "s")
		b = appendSection(b, it.Sec)
	}
	if len(it.Files()) > 0 {
		b = appendKey(b, true, "f")
		b = appendList(b, it.Files(), func(b []byte, f *render.FileRef) []byte {
			b = append(b, `{"path":`...)
			b = appendString(b, f.Path)
			b = append(b, `,"data":`...)
			if f.Data == nil {
				b = append(b, "null"...)
			} else {
				b = append(b, '"')
				b = base64.StdEncoding.AppendEncode(b, f.Data)
				b = append(b, '"')
			}
			return append(b, '}')
		})
	}
	if it.Comment() != "" {
		b = appendKey(b, true, "c")
		b = appendString(b, it.Comment())
	}
	return append(b, '}')
}

func (m bodiesFile) writeState(w *bufio.Writer) error {
	if m == nil {
		_, err := w.WriteString("null\n")
		return err
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	b := make([]byte, 0, 64<<10)
	b = append(b, '{')
	var err error
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, n)
		b = append(b, ':')
		b = appendSection(b, m[n])
		if b, err = flushAt(w, b); err != nil {
			return err
		}
	}
	b = append(b, '}', '\n')
	_, err = w.Write(b)
	return err
}

func appendOrigin(b []byte, o *render.Origin) []byte {
	b = append(b, `{"policy":`...)
	b = appendString(b, o.Policy)
	b = append(b, `,"rule":`...)
	b = appendString(b, o.Rule)
	b = append(b, `,"rule_index":`...)
	b = strconv.AppendInt(b, int64(o.RuleIndex), 10)
	if o.FilterList != "" {
		b = appendKey(b, true, "filter_list")
		b = appendString(b, o.FilterList)
	}
	b = append(b, `,"action":`...)
	b = appendString(b, o.Action)
	if o.Peer != "" {
		b = appendKey(b, true, "peer")
		b = appendString(b, o.Peer)
	}
	if o.Line != 0 {
		b = appendKey(b, true, "line")
		b = strconv.AppendInt(b, int64(o.Line), 10)
	}
	if o.File != "" {
		b = appendKey(b, true, "file")
		b = appendString(b, o.File)
	}
	return append(b, '}')
}

func appendChildOrigin(b []byte, c *render.ChildOrigin) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, c.Name)
	b = append(b, `,"filter_index":`...)
	b = strconv.AppendInt(b, int64(c.FilterIndex), 10)
	if c.Line != 0 {
		b = appendKey(b, true, "line")
		b = strconv.AppendInt(b, int64(c.Line), 10)
	}
	if c.File != "" {
		b = appendKey(b, true, "file")
		b = appendString(b, c.File)
	}
	b = append(b, `,"summary":`...)
	b = appendString(b, c.Summary)
	if c.Rule != "" {
		b = appendKey(b, true, "rule")
		b = appendString(b, c.Rule)
	}
	if c.RuleIndex != 0 {
		b = appendKey(b, true, "rule_index")
		b = strconv.AppendInt(b, int64(c.RuleIndex), 10)
	}
	if c.FilterList != "" {
		b = appendKey(b, true, "filter_list")
		b = appendString(b, c.FilterList)
	}
	return append(b, '}')
}

func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

func appendConn(b []byte, c *RecordConn) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, c.Name)
	b = append(b, `,"hash":`...)
	b = appendString(b, c.Hash)
	b = append(b, `,"ike_hash":`...)
	b = appendString(b, c.IKEHash)
	b = append(b, `,"child_hashes":`...)
	b = appendStringMap(b, c.ChildHashes)
	b = append(b, `,"origin":`...)
	b = appendOrigin(b, &c.Origin)
	b = append(b, `,"children":`...)
	b = appendList(b, c.Children, appendChildOrigin)
	if c.View != "" {
		b = appendKey(b, true, "view")
		b = appendString(b, c.View)
	}
	return append(b, '}')
}

func appendSecret(b []byte, s *RecordSecret) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, s.Name)
	b = append(b, `,"owners":`...)
	b = appendStrings(b, s.Owners)
	b = append(b, `,"conns":`...)
	b = appendStrings(b, s.Conns)
	if s.Fingerprint != "" {
		b = appendKey(b, true, "fingerprint")
		b = appendString(b, s.Fingerprint)
	}
	return append(b, '}')
}

func (r *Record) writeState(w *bufio.Writer) error {
	b := make([]byte, 0, 64<<10)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = append(b, `,"socket":`...)
	b = appendString(b, r.Socket)
	b = append(b, `,"source":`...)
	b = appendString(b, r.Source)
	b = append(b, `,"policy":`...)
	b = appendString(b, r.Policy)
	b = append(b, `,"backend":`...)
	b = appendString(b, r.Backend)
	at, err := r.AppliedAt.MarshalJSON()
	if err != nil {
		return err
	}
	b = append(b, `,"applied_at":`...)
	b = append(b, at...)
	b = append(b, `,"conns":`...)
	if r.Conns == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Conns {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendConn(b, &r.Conns[i])
			if b, err = flushAt(w, b); err != nil {
				return err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"secrets":`...)
	if r.Secrets == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Secrets {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendSecret(b, &r.Secrets[i])
			if b, err = flushAt(w, b); err != nil {
				return err
			}
		}
		b = append(b, ']')
	}
	if len(r.Keys) > 0 {
		b = appendKey(b, true, "keys")
		b = appendStrings(b, r.Keys)
	}
	if len(r.Inputs) > 0 {
		b = appendKey(b, true, "inputs")
		b = appendList(b, r.Inputs, func(b []byte, in *RecordInput) []byte {
			b = append(b, `{"kind":`...)
			b = appendString(b, in.Kind)
			b = append(b, `,"name":`...)
			b = appendString(b, in.Name)
			b = append(b, `,"fingerprint":`...)
			b = appendString(b, in.Fingerprint)
			return append(b, '}')
		})
	}
	if len(r.Warnings) > 0 {
		b = appendKey(b, true, "warnings")
		b = appendStrings(b, r.Warnings)
	}
	if r.UsesCertificates {
		b = append(b, `,"uses_certificates":true`...)
	}
	if r.GuardHash != "" {
		b = appendKey(b, true, "guard_hash")
		b = appendString(b, r.GuardHash)
	}
	if len(r.Leftovers) > 0 {
		b = appendKey(b, true, "leftovers")
		b = appendStrings(b, r.Leftovers)
	}
	b = append(b, '}', '\n')
	_, err = w.Write(b)
	return err
}

// writeState writes the snapshot as encoding/json's Encoder does, the
// policy's bytes in base64 as they are encoded (a policy of 5,000 rules
// is 2 MB: encoding/json held it encoded twice over, beside the apply).
func (s *Snapshot) writeState(w *bufio.Writer) error {
	b := w.AvailableBuffer()
	b = append(b, `{"path":`...)
	b = appendString(b, s.Path)
	b = append(b, `,"data":`...)
	if s.Data == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if s.Data != nil {
		enc := base64.NewEncoder(base64.StdEncoding, w)
		if _, err := enc.Write(s.Data); err != nil {
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
		if err := w.WriteByte('"'); err != nil {
			return err
		}
	}
	b = w.AvailableBuffer()
	if s.Insecure {
		b = append(b, `,"insecure":true`...)
	}
	b = append(b, `,"backend":`...)
	b = appendString(b, s.Backend)
	at, err := s.At.MarshalJSON()
	if err != nil {
		return err
	}
	b = append(b, `,"at":`...)
	b = append(b, at...)
	b = append(b, "}\n"...)
	_, err = w.Write(b)
	return err
}
