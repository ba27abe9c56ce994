package netfilter

import (
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func setMessage(t *testing.T, typ uint16, family byte, table, name string) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_TABLE, table)
	ae.String(unix.NFTA_SET_NAME, name)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
}

// Only the addition of that set to table inet swanmgr tells the commit.
func TestAddsSet(t *testing.T) {
	const fp = "fp-0123"
	for _, c := range []struct {
		name string
		m    netlink.Message
		want bool
	}{
		{"the set", setMessage(t, unix.NFT_MSG_NEWSET, unix.NFPROTO_INET, "swanmgr", fp), true},
		{"another set", setMessage(t, unix.NFT_MSG_NEWSET, unix.NFPROTO_INET, "swanmgr", "fp-4567"), false},
		{"another table", setMessage(t, unix.NFT_MSG_NEWSET, unix.NFPROTO_INET, "other", fp), false},
		{"another family", setMessage(t, unix.NFT_MSG_NEWSET, unix.NFPROTO_IPV4, "swanmgr", fp), false},
		{"its deletion", setMessage(t, unix.NFT_MSG_DELSET, unix.NFPROTO_INET, "swanmgr", fp), false},
		{"an element", setMessage(t, unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_INET, "swanmgr", fp), false},
		{"short", netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSET)}, Data: []byte{1}}, false},
	} {
		if got := addsSet(c.m, fp); got != c.want {
			t.Errorf("%s: addsSet = %v, want %v", c.name, got, c.want)
		}
	}
}
