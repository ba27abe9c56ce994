package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	govici "github.com/strongswan/govici/vici"
)

// Recorded VICI messages are kept in testdata as JSON that keeps charon's
// key order: a section is an object, a list an array of strings, a value a
// string.

// messageJSON writes m as ordered JSON.
func messageJSON(buf *bytes.Buffer, m *govici.Message, indent string) {
	keys := m.Keys()
	if len(keys) == 0 {
		buf.WriteString("{}")
		return
	}
	buf.WriteString("{\n")
	for i, k := range keys {
		buf.WriteString(indent + "  " + strconv.Quote(k) + ": ")
		switch v := m.Get(k).(type) {
		case string:
			b, _ := json.Marshal(v)
			buf.Write(b)
		case []string:
			b, _ := json.Marshal(v)
			if v == nil {
				b = []byte("[]")
			}
			buf.Write(b)
		case *govici.Message:
			messageJSON(buf, v, indent+"  ")
		}
		if i < len(keys)-1 {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	buf.WriteString(indent + "}")
}

// decodeMessage reads one ordered JSON object as a message.
func decodeMessage(dec *json.Decoder) (*govici.Message, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("vici json: want an object, got %v", t)
	}
	m := govici.NewMessage()
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		raw = bytes.TrimSpace(raw)
		switch {
		case len(raw) > 0 && raw[0] == '{':
			sub, err := decodeMessage(json.NewDecoder(bytes.NewReader(raw)))
			if err != nil {
				return nil, err
			}
			err = m.Set(key, sub)
			if err != nil {
				return nil, err
			}
		case len(raw) > 0 && raw[0] == '[':
			var l []string
			if err := json.Unmarshal(raw, &l); err != nil {
				return nil, fmt.Errorf("vici json %q: %w", key, err)
			}
			if l == nil {
				l = []string{}
			}
			if err := m.Set(key, l); err != nil {
				return nil, err
			}
		default:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("vici json %q: %w", key, err)
			}
			if err := m.Set(key, s); err != nil {
				return nil, err
			}
		}
	}
	if _, err := dec.Token(); err != nil && err != io.EOF {
		return nil, err
	}
	return m, nil
}

// parseMessage reads one message from raw ordered JSON.
func parseMessage(raw []byte) (*govici.Message, error) {
	return decodeMessage(json.NewDecoder(bytes.NewReader(raw)))
}

// orderedMessages is a JSON array of messages.
type orderedMessages []*govici.Message

func (o *orderedMessages) UnmarshalJSON(b []byte) error {
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return err
	}
	for _, r := range raws {
		m, err := parseMessage(r)
		if err != nil {
			return err
		}
		*o = append(*o, m)
	}
	return nil
}

func (o orderedMessages) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("[")
	for i, m := range o {
		if i > 0 {
			buf.WriteString(",")
		}
		messageJSON(&buf, m, "")
	}
	buf.WriteString("]")
	return buf.Bytes(), nil
}

// orderedMessage is one message in JSON.
type orderedMessage struct{ *govici.Message }

func (o *orderedMessage) UnmarshalJSON(b []byte) error {
	m, err := parseMessage(b)
	o.Message = m
	return err
}

func (o orderedMessage) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	if o.Message == nil {
		return []byte("null"), nil
	}
	messageJSON(&buf, o.Message, "")
	return buf.Bytes(), nil
}
