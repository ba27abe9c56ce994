package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// holdTable is the nftables table this test creates in its own lab
// namespaces to hold IKE back; no other table is touched.
const holdTable = "swanmgr_e2e_hold"

// holdIKE drops the host's outgoing IKE (UDP 500 and 4500) until release.
func holdIKE(t *testing.T, h *lab.Host) (release func()) {
	t.Helper()
	script := fmt.Sprintf("table inet %s {\n\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n\t\tudp dport { 500, 4500 } drop\n\t}\n}\n", holdTable)
	cmd := h.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: nft: %v\n%s", h.Name, err, out)
	}
	return func() {
		t.Helper()
		if out, err := h.Command(context.Background(), "nft", "delete", "table", "inet", holdTable).CombinedOutput(); err != nil {
			t.Fatalf("%s: nft delete table: %v\n%s", h.Name, err, out)
		}
	}
}

// Both ends start the same rule's SAs while the network between them is
// down (a peer booting before the link, or two containers started
// together): each side has an IKE_SA of its own under way. When IKE gets
// through, the rule must end with one IKE_SA and one CHILD_SA per filter
// on both ends, the same SAs on both, not one pair per initiator.
func TestSimultaneousStartOneSA(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv(optIn) == "1" {
			t.Fatalf("%s=1 but nft is missing: %v", optIn, err)
		}
		t.Skipf("nft missing: %v", err)
	}
	l := newLab(t, lab.Libipsec, "alice", "bob")
	releaseAlice := holdIKE(t, l.Host("alice"))
	releaseBob := holdIKE(t, l.Host("bob"))

	// Alice starts first, Bob half a second later: their IKE_SA_INIT
	// retransmissions (1 s, then 1.4 s later, ...) then reach the other
	// end about 0.5 s apart, so one IKE_SA is established before the
	// other one's IKE_AUTH arrives: the case charon's uniqueness policy
	// decides. The pause staggers the two starts; it waits for nothing.
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	waitConnecting(t, l, "alice")
	time.Sleep(500 * time.Millisecond)
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	waitConnecting(t, l, "bob")
	releaseAlice()
	releaseBob()

	want := map[string][]string{
		"alice": {"sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3"},
		"bob":   {"sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3"},
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		var why []string
		spis := map[string]string{}
		for _, h := range []string{"alice", "bob"} {
			sas := l.sas(h)
			why = append(why, fmt.Sprintf("%s: %s", h, describeSAs(sas)))
			if len(sas) != 1 || sas[0].State != "ESTABLISHED" {
				continue
			}
			spis[h] = sas[0].InitiatorSPI + "/" + sas[0].ResponderSPI
			count := map[string]int{}
			for _, ch := range sas[0].Children {
				count[ch.Name]++
				if ch.State != "INSTALLED" {
					count[ch.Name] += 100
				}
			}
			ok := len(count) == len(want[h])
			for _, name := range want[h] {
				ok = ok && count[name] == 1
			}
			if !ok {
				delete(spis, h)
			}
		}
		return len(spis) == 2 && spis["alice"] == spis["bob"],
			"want one IKE_SA (the same on both ends) with one INSTALLED CHILD_SA per filter:\n" + strings.Join(why, "\n")
	})
}

// waitConnecting polls until the host has an IKE_SA under way.
func waitConnecting(t *testing.T, l *testLab, host string) {
	t.Helper()
	eventually(t, 10*time.Second, func() (bool, string) {
		sas := l.sas(host)
		for _, sa := range sas {
			if sa.State == "CONNECTING" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s has no IKE_SA CONNECTING: %s", host, describeSAs(sas))
	})
}

// describeSAs is a one-line view of IKE_SAs and their CHILD_SAs.
func describeSAs(sas []vici.IKESA) string {
	if len(sas) == 0 {
		return "no IKE_SA"
	}
	var parts []string
	for _, sa := range sas {
		var kids []string
		for _, ch := range sa.Children {
			kids = append(kids, ch.Name+" "+ch.State)
		}
		parts = append(parts, fmt.Sprintf("IKE_SA %s #%d %s %s_i %s_r [%s]", sa.Name, sa.UniqueID, sa.State, sa.InitiatorSPI, sa.ResponderSPI, strings.Join(kids, ", ")))
	}
	return strings.Join(parts, "; ")
}
