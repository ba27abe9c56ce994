package vici

import (
	"fmt"
	"strconv"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// fields reads typed values out of a message section. charon sends every
// value as a string; a value of the wrong shape or an unparsable number is
// an error (the first one is kept, with its key path), never a silent zero.
type fields struct {
	m    *govici.Message
	path string // e.g. `IKE_SA "home" child "net-3"`
	err  error
}

func (f *fields) fail(key, format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf("%s: %s: %s", f.path, key, fmt.Sprintf(format, args...))
	}
}

// str returns a string value; "" when absent.
func (f *fields) str(key string) string {
	switch v := f.m.Get(key).(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		f.fail(key, "expected a value, got %T", v)
		return ""
	}
}

// list returns a list value; nil when absent.
func (f *fields) list(key string) []string {
	switch v := f.m.Get(key).(type) {
	case nil:
		return nil
	case []string:
		return v
	default:
		f.fail(key, "expected a list, got %T", v)
		return nil
	}
}

// section returns a sub-section; nil when absent.
func (f *fields) section(key string) *govici.Message {
	switch v := f.m.Get(key).(type) {
	case nil:
		return nil
	case *govici.Message:
		return v
	default:
		f.fail(key, "expected a section, got %T", v)
		return nil
	}
}

// flag reads charon's booleans: "yes" (or "1", as esn uses) is true;
// absent, "no" or "0" is false.
func (f *fields) flag(key string) bool {
	switch v := f.str(key); v {
	case "yes", "1":
		return true
	case "", "no", "0":
		return false
	default:
		f.fail(key, "invalid boolean %q", v)
		return false
	}
}

func (f *fields) u64(key string) uint64 {
	s := f.str(key)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		f.fail(key, "invalid number %q", s)
	}
	return n
}

func (f *fields) i64(key string) int64 {
	s := f.str(key)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f.fail(key, "invalid number %q", s)
	}
	return n
}

func (f *fields) int(key string) int {
	return int(f.i64(key))
}

func (f *fields) port(key string) uint16 {
	s := f.str(key)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		f.fail(key, "invalid port %q", s)
	}
	return uint16(n)
}

// seconds reads a signed number of seconds (charon's rekey-time is
// negative when a rekeying is overdue).
func (f *fields) seconds(key string) time.Duration {
	return time.Duration(f.i64(key)) * time.Second
}
