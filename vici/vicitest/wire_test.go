package vicitest

import (
	"bytes"
	"testing"

	govici "github.com/strongswan/govici/vici"
)

// The encoding example of the VICI README.
var readmeExample = []byte{
	3, 4, 'k', 'e', 'y', '1', 0, 6, 'v', 'a', 'l', 'u', 'e', '1',
	1, 8, 's', 'e', 'c', 't', 'i', 'o', 'n', '1',
	1, 11, 's', 'u', 'b', '-', 's', 'e', 'c', 't', 'i', 'o', 'n',
	3, 4, 'k', 'e', 'y', '2', 0, 6, 'v', 'a', 'l', 'u', 'e', '2',
	2,
	4, 5, 'l', 'i', 's', 't', '1',
	5, 0, 5, 'i', 't', 'e', 'm', '1',
	5, 0, 5, 'i', 't', 'e', 'm', '2',
	6,
	2,
}

func TestEncodeReadmeExample(t *testing.T) {
	m := Msg("key1", "value1", "section1", Msg(
		"sub-section", Msg("key2", "value2"),
		"list1", []string{"item1", "item2"}))
	got, err := EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, readmeExample) {
		t.Errorf("encoded\n%v\nwant\n%v", got, readmeExample)
	}
	back, err := DecodeMessage(readmeExample)
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != m.String() {
		t.Errorf("decoded\n%v\nwant\n%v", back, m)
	}
}

func TestPacketRoundTrip(t *testing.T) {
	for _, p := range []Packet{
		{Type: CmdRequest, Name: "list-sas", Message: Msg("noblock", "yes", "empty", []string{})},
		{Type: CmdResponse, Message: govici.NewMessage()},
		{Type: EventRegister, Name: "list-sa"},
		{Type: EventConfirm},
		{Type: EventPacket, Name: "ike-updown", Message: Msg("up", "yes", "x", Msg("state", "ESTABLISHED"))},
	} {
		b, err := EncodePacket(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != p.Type || got.Name != p.Name || (p.Message != nil) != (got.Message != nil) ||
			(p.Message != nil && got.Message.String() != p.Message.String()) {
			t.Errorf("round trip of %+v gave %+v", p, got)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{
		{3, 4, 'k'},            // truncated key
		{1, 1, 's'},            // unterminated section
		{2},                    // section end at root
		{4, 1, 'l', 3},         // key/value inside a list
		{9},                    // unknown element
		{3, 1, 'k', 0, 5, 'v'}, // truncated value
	} {
		if _, err := DecodeMessage(b); err == nil {
			t.Errorf("DecodeMessage(%v) succeeded", b)
		}
	}
}
