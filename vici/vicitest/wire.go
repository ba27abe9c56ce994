package vicitest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	govici "github.com/strongswan/govici/vici"
)

// Packet types of the VICI packet layer (see the VICI README).
const (
	CmdRequest      byte = 0
	CmdResponse     byte = 1
	CmdUnknown      byte = 2
	EventRegister   byte = 3
	EventUnregister byte = 4
	EventConfirm    byte = 5
	EventUnknown    byte = 6
	EventPacket     byte = 7
)

// Message element types.
const (
	elemSectionStart byte = 1
	elemSectionEnd   byte = 2
	elemKeyValue     byte = 3
	elemListStart    byte = 4
	elemListItem     byte = 5
	elemListEnd      byte = 6
)

// MaxSegment is charon's limit on one transport segment (512 KiB).
const MaxSegment = 512 * 1024

// Packet is one packet of the VICI packet layer.
type Packet struct {
	Type    byte
	Name    string          // set for named types: requests, registrations, events
	Message *govici.Message // nil for (un)registration and their answers
}

func named(t byte) bool {
	return t == CmdRequest || t == EventRegister || t == EventUnregister || t == EventPacket
}

// EncodePacket returns p as one transport segment: the 4-byte length header
// followed by the packet.
func EncodePacket(p Packet) ([]byte, error) {
	b := []byte{0, 0, 0, 0, p.Type}
	if named(p.Type) {
		if p.Name == "" || len(p.Name) > 255 {
			return nil, fmt.Errorf("vicitest: bad packet name %q", p.Name)
		}
		b = append(b, byte(len(p.Name)))
		b = append(b, p.Name...)
	}
	if p.Message != nil {
		var err error
		if b, err = appendMessage(b, p.Message); err != nil {
			return nil, err
		}
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b, nil
}

// EncodeMessage returns the body encoding of m, without a packet header.
func EncodeMessage(m *govici.Message) ([]byte, error) {
	return appendMessage(nil, m)
}

func appendName(b []byte, name string) ([]byte, error) {
	if len(name) > 255 {
		return nil, fmt.Errorf("vicitest: key %q longer than 255 bytes", name)
	}
	b = append(b, byte(len(name)))
	return append(b, name...), nil
}

func appendValue(b []byte, v string) ([]byte, error) {
	if len(v) > 0xffff {
		return nil, fmt.Errorf("vicitest: value of %d bytes exceeds 65535", len(v))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...), nil
}

func appendMessage(b []byte, m *govici.Message) ([]byte, error) {
	var err error
	for _, k := range m.Keys() {
		switch v := m.Get(k).(type) {
		case string:
			b = append(b, elemKeyValue)
			if b, err = appendName(b, k); err != nil {
				return nil, err
			}
			if b, err = appendValue(b, v); err != nil {
				return nil, err
			}
		case []string:
			b = append(b, elemListStart)
			if b, err = appendName(b, k); err != nil {
				return nil, err
			}
			for _, it := range v {
				b = append(b, elemListItem)
				if b, err = appendValue(b, it); err != nil {
					return nil, err
				}
			}
			b = append(b, elemListEnd)
		case *govici.Message:
			b = append(b, elemSectionStart)
			if b, err = appendName(b, k); err != nil {
				return nil, err
			}
			if b, err = appendMessage(b, v); err != nil {
				return nil, err
			}
			b = append(b, elemSectionEnd)
		default:
			return nil, fmt.Errorf("vicitest: key %q has unsupported type %T", k, v)
		}
	}
	return b, nil
}

// ReadPacket reads one transport segment from r and decodes its packet.
func ReadPacket(r io.Reader) (Packet, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Packet{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxSegment {
		return Packet{}, fmt.Errorf("vicitest: segment of %d bytes exceeds %d", n, MaxSegment)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return Packet{}, err
	}
	return DecodePacket(buf)
}

var errShort = errors.New("vicitest: truncated packet")

// DecodePacket decodes one packet (a segment without its length header).
func DecodePacket(buf []byte) (Packet, error) {
	if len(buf) < 1 {
		return Packet{}, errShort
	}
	p := Packet{Type: buf[0]}
	buf = buf[1:]
	if p.Type > EventPacket {
		return Packet{}, fmt.Errorf("vicitest: unknown packet type %d", p.Type)
	}
	if named(p.Type) {
		if len(buf) < 1 || len(buf) < 1+int(buf[0]) {
			return Packet{}, errShort
		}
		p.Name = string(buf[1 : 1+int(buf[0])])
		buf = buf[1+int(buf[0]):]
	}
	if p.Type == CmdRequest || p.Type == CmdResponse || p.Type == EventPacket {
		m, err := DecodeMessage(buf)
		if err != nil {
			return Packet{}, err
		}
		p.Message = m
	} else if len(buf) != 0 {
		return Packet{}, fmt.Errorf("vicitest: packet type %d carries %d unexpected bytes", p.Type, len(buf))
	}
	return p, nil
}

// DecodeMessage decodes a message body.
func DecodeMessage(buf []byte) (*govici.Message, error) {
	d := decoder{buf: buf}
	m, err := d.section(false)
	if err != nil {
		return nil, err
	}
	return m, nil
}

type decoder struct {
	buf []byte
}

func (d *decoder) byte() (byte, error) {
	if len(d.buf) < 1 {
		return 0, errShort
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b, nil
}

func (d *decoder) name() (string, error) {
	n, err := d.byte()
	if err != nil {
		return "", err
	}
	if len(d.buf) < int(n) {
		return "", errShort
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s, nil
}

func (d *decoder) value() (string, error) {
	if len(d.buf) < 2 {
		return "", errShort
	}
	n := int(binary.BigEndian.Uint16(d.buf))
	d.buf = d.buf[2:]
	if len(d.buf) < n {
		return "", errShort
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s, nil
}

// section decodes elements until the end of the buffer (the root) or until
// a SECTION_END (nested).
func (d *decoder) section(nested bool) (*govici.Message, error) {
	m := govici.NewMessage()
	for {
		if !nested && len(d.buf) == 0 {
			return m, nil
		}
		t, err := d.byte()
		if err != nil {
			return nil, err
		}
		switch t {
		case elemSectionEnd:
			if !nested {
				return nil, errors.New("vicitest: unbalanced SECTION_END")
			}
			return m, nil
		case elemKeyValue:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			if err := m.Set(k, v); err != nil {
				return nil, err
			}
		case elemListStart:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			list := []string{}
			for {
				t, err := d.byte()
				if err != nil {
					return nil, err
				}
				if t == elemListEnd {
					break
				}
				if t != elemListItem {
					return nil, fmt.Errorf("vicitest: element %d inside list %q", t, k)
				}
				v, err := d.value()
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if err := m.Set(k, list); err != nil {
				return nil, err
			}
		case elemSectionStart:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			sub, err := d.section(true)
			if err != nil {
				return nil, err
			}
			if err := m.Set(k, sub); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("vicitest: unknown element type %d", t)
		}
	}
}
