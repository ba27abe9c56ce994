package netfilter

import (
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/swanmgr/swanmgr/guard"
)

// A transaction that deletes anything (a patch deletes the fingerprint
// set of the table it changes) is committed as soon as the kernel has
// nft's batch, but nft's exit waits one RCU grace period more: closing
// its netlink socket flushes the kernel's deferred release of what the
// transaction deleted (nf_tables' NETLINK_URELEASE handler), 15-20 ms
// here in which nothing of the table changes any more. A patch is waited
// for only until its commit is seen: the kernel tells the members of the
// nftables group of the new fingerprint set (NFT_MSG_NEWSET) when the
// transaction that adds it is committed, and the batch is atomic. The
// nft that sent it is then left to finish; the next transaction, and
// Close, wait for it.

// commitWatch is a subscription to the nftables group of one namespace,
// made before nft runs: in is closed once the guard's table has gained
// the fingerprint set fp.
type commitWatch struct {
	conn *netlink.Conn
	in   chan struct{}
}

// watchCommit subscribes, in the calling thread's namespace, to the
// addition of set fp to the guard's table; nil when it cannot (the
// caller then waits for nft's exit, as before).
func watchCommit(fp string) *commitWatch {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil
	}
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		conn.Close()
		return nil
	}
	w := &commitWatch{conn: conn, in: make(chan struct{})}
	go func() {
		for {
			// An error (the subscription closed, or the kernel's
			// notifications overflowed its buffer) leaves in open:
			// nft's exit tells then.
			msgs, err := conn.Receive()
			if err != nil {
				return
			}
			for _, m := range msgs {
				if addsSet(m, fp) {
					close(w.in)
					return
				}
			}
		}
	}()
	return w
}

// addsSet reports whether m tells of set fp added to table inet swanmgr.
func addsSet(m netlink.Message, fp string) bool {
	if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSET) ||
		len(m.Data) < 4 || m.Data[0] != unix.NFPROTO_INET {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return false
	}
	var table, name string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_TABLE:
			table = ad.String()
		case unix.NFTA_SET_NAME:
			name = ad.String()
		}
	}
	return ad.Err() == nil && table == guard.Table && name == fp
}

// close ends the subscription.
func (w *commitWatch) close() {
	if w != nil {
		w.conn.Close()
	}
}
