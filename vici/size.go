package vici

import (
	"fmt"

	govici "github.com/strongswan/govici/vici"
)

// charon's limits (vici_socket.h, VICI README): a packet of more than
// 512 KiB makes charon drop the connection without an answer, so refuse to
// send one; a single value has a 16-bit length.
const (
	maxPacket = 512 * 1024
	maxValue  = 1<<16 - 1
)

// checkSize refuses requests charon would not take, with an error naming
// the reason instead of the lost connection charon's refusal would cause.
// It never prints values: they may be secrets.
func checkSize(cmd string, req *govici.Message) error {
	n := 2 + len(cmd) // packet type, name length, name
	if req != nil {
		body, err := bodySize(req, "")
		if err != nil {
			return err
		}
		n += body
	}
	if n > maxPacket {
		return fmt.Errorf("request is %d bytes, charon accepts at most %d: send it in smaller parts", n, maxPacket)
	}
	return nil
}

func bodySize(m *govici.Message, path string) (int, error) {
	n := 0
	for _, k := range m.Keys() {
		if len(k) > 255 {
			return 0, fmt.Errorf("key %q is longer than 255 bytes", path+k)
		}
		n += 2 + len(k) // element type, key length, key
		switch v := m.Get(k).(type) {
		case string:
			if len(v) > maxValue {
				return 0, fmt.Errorf("value of %q is %d bytes, VICI allows at most %d", path+k, len(v), maxValue)
			}
			n += 2 + len(v)
		case []string:
			for _, it := range v {
				if len(it) > maxValue {
					return 0, fmt.Errorf("an item of %q is %d bytes, VICI allows at most %d", path+k, len(it), maxValue)
				}
				n += 3 + len(it)
			}
			n++ // list end
		case *govici.Message:
			sub, err := bodySize(v, path+k+".")
			if err != nil {
				return 0, err
			}
			n += sub + 1 // section end
		}
	}
	return n, nil
}
