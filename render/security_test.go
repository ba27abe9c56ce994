package render

import (
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
)

func TestCompareChildSecurity(t *testing.T) {
	high := model.ResolvedAction{ESPEnc: []string{"aes256gcm16"}}
	highPFS := model.ResolvedAction{ESPEnc: []string{"aes256gcm16"}, PFS: true, PFSGroup: "x25519"}
	highPFS2 := model.ResolvedAction{ESPEnc: []string{"aes256gcm"}, PFS: true, PFSGroup: "curve25519"}
	highModp := model.ResolvedAction{ESPEnc: []string{"aes256gcm16"}, PFS: true, PFSGroup: "modp3072"}
	cbc := model.ResolvedAction{ESPEnc: []string{"aes256"}, ESPInteg: []string{"sha256"}}
	cbc2 := model.ResolvedAction{ESPEnc: []string{"aes128", "aes256"}, ESPInteg: []string{"sha2_256", "sha384"}}
	ah := model.ResolvedAction{AHInteg: []string{"sha256"}}
	cases := []struct {
		name      string
		a, b      model.ResolvedAction
		immediate int
		rekey     int
		want      string
	}{
		{"same", highPFS, highPFS, 0, 0, ""},
		{"aliases", highPFS, highPFS2, 0, 0, ""},
		{"overlap", cbc, cbc2, 0, 0, ""},
		{"pfs on one side", highPFS, high, 0, 1, "this side has PFS with x25519, the peer no PFS"},
		{"pfs groups differ", highPFS, highModp, 0, 1, "PFS with x25519, the peer PFS with modp3072"},
		{"no common cipher", cbc, high, 1, 0, "this side proposes esp aes256-sha256, the peer esp aes256gcm16"},
		{"esp and ah", high, ah, 1, 0, "one side uses ESP, the other AH"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CompareChildSecurity(ChildSecurityOf(c.a), ChildSecurityOf(c.b))
			var imm, rek int
			var all []string
			for _, m := range got {
				if m.Immediate {
					imm++
				} else {
					rek++
				}
				all = append(all, m.Msg)
			}
			if imm != c.immediate || rek != c.rekey {
				t.Errorf("got %d immediate, %d at rekeying, want %d, %d: %q", imm, rek, c.immediate, c.rekey, all)
			}
			if c.want != "" && !strings.Contains(strings.Join(all, "\n"), c.want) {
				t.Errorf("messages %q lack %q", all, c.want)
			}
		})
	}
}
