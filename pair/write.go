package pair

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/model"
)

// write renders the mirrored policy as TOML in the layout of the examples:
// a header saying where it came from, endpoint, filter lists, filter
// actions, the policy. The same input always gives the same bytes.
//
// With verify the files the peer gets copies of are named where the
// source has them (Mirrored.verify).
func (m *mirror) write(verify bool) string {
	var b strings.Builder
	policy := m.rename(m.a.Policy.Name, m.adaptOwner)
	fmt.Fprintf(&b, "# %s's side of %q, written by `swanmgr mirror` from %s\n", m.o.Name, m.a.Policy.Name, m.base())
	fmt.Fprintf(&b, "# for peer %s. Every filter names the same traffic as its source filter,\n", m.o.Peer)
	fmt.Fprintf(&b, "# seen from this computer: \"me\" and %s (%s) are swapped, ports stay\n", m.selfName, m.self)
	b.WriteString("# with their addresses, so the selectors are the exact mirror. Check both\n")
	fmt.Fprintf(&b, "# ends with `swanmgr check %s <this file>`.\n", m.base())
	fmt.Fprintf(&b, "assign = %s\n\n", quote(policy))

	b.WriteString("[endpoint]\n")
	fmt.Fprintf(&b, "name = %s\n", quote(m.o.Name))
	fmt.Fprintf(&b, "addresses = [%s]\n", quote(m.o.Peer.String()))
	if m.peerID != "" {
		fmt.Fprintf(&b, "id = %s # what %s expects (peer_id)\n", quote(m.peerID), m.selfName)
	}

	for _, l := range m.lists {
		b.WriteString("\n[[filter_list]]\n")
		fmt.Fprintf(&b, "name = %s # mirrors %s\n", quote(l.name), l.from)
		if l.description != "" {
			fmt.Fprintf(&b, "description = %s\n", quote(l.description))
		}
		for _, f := range l.filters {
			fmt.Fprintf(&b, "  # %s\n", f.comment)
			b.WriteString("  [[filter_list.filter]]\n")
			fmt.Fprintf(&b, "  source = %s\n", quote(f.src))
			fmt.Fprintf(&b, "  destination = %s\n", quote(f.dst))
			if f.proto != "" {
				if n, err := strconv.Atoi(f.proto); err == nil {
					fmt.Fprintf(&b, "  protocol = %d\n", n)
				} else {
					fmt.Fprintf(&b, "  protocol = %s\n", quote(f.proto))
				}
			}
			if f.srcPort != model.AnyPort {
				fmt.Fprintf(&b, "  source_port = %d\n", f.srcPort)
			}
			if f.dstPort != model.AnyPort {
				fmt.Fprintf(&b, "  destination_port = %d\n", f.dstPort)
			}
		}
	}

	for _, fa := range m.actions {
		b.WriteString("\n[[filter_action]]\n")
		fmt.Fprintf(&b, "name = %s # the same security on both ends\n", quote(fa.Name))
		if fa.Description != "" {
			fmt.Fprintf(&b, "description = %s\n", quote(fa.Description))
		}
		fmt.Fprintf(&b, "action = %s\n", quote(string(fa.Action)))
		if fa.Security != "" {
			fmt.Fprintf(&b, "security = %s\n", quote(string(fa.Security)))
		}
		writeBool(&b, "pfs", fa.PFS)
		writeBool(&b, "fallback_to_clear", fa.FallbackToClear)
		writeBool(&b, "accept_unsecured", fa.AcceptUnsecured)
		writeList(&b, "esp_encryption", fa.ESPEncryption)
		writeList(&b, "esp_integrity", fa.ESPIntegrity)
		writeList(&b, "ah_integrity", fa.AHIntegrity)
		if fa.PFSGroup != "" {
			fmt.Fprintf(&b, "pfs_group = %s\n", quote(fa.PFSGroup))
		}
		if fa.RekeySeconds != nil {
			fmt.Fprintf(&b, "rekey_seconds = %d\n", *fa.RekeySeconds)
		}
		if fa.RekeyKilobytes != nil {
			fmt.Fprintf(&b, "rekey_kilobytes = %d\n", *fa.RekeyKilobytes)
		}
	}

	b.WriteString("\n[[policy]]\n")
	fmt.Fprintf(&b, "name = %s\n", quote(policy))
	for _, r := range m.rules {
		b.WriteString("\n")
		fmt.Fprintf(&b, "  # mirrors %s\n", r.from)
		b.WriteString("  [[policy.rule]]\n")
		if r.name != "" {
			fmt.Fprintf(&b, "  name = %s\n", quote(r.name))
		}
		fmt.Fprintf(&b, "  filter_list = %s\n", quote(r.list))
		fmt.Fprintf(&b, "  filter_action = %s\n", quote(r.action))
		if r.network != "" && r.network != string(model.NetworkAll) {
			fmt.Fprintf(&b, "  network = %s\n", quote(r.network))
		}
		if r.tunnel != "" {
			fmt.Fprintf(&b, "  tunnel_endpoint = %s # %s\n", quote(r.tunnel), m.selfName)
		}
		var items []string
		for _, au := range r.auth {
			if au.comment != "" {
				fmt.Fprintf(&b, "  # %s\n", au.comment)
			}
			kvs := []string{"method = " + quote(string(au.method))}
			secretFile, ca := au.secretFile, au.ca
			if verify {
				secretFile, ca = au.secretFrom, au.caFrom
			}
			for _, kv := range [][2]string{
				{"secret_file", secretFile}, {"secret_env", au.secretEnv},
				{"ca", ca}, {"certificate", au.cert}, {"private_key", au.key}, {"peer_id", au.peerID},
			} {
				if kv[1] != "" {
					kvs = append(kvs, kv[0]+" = "+quote(kv[1]))
				}
			}
			items = append(items, "{ "+strings.Join(kvs, ", ")+" }")
		}
		if len(items) > 0 {
			fmt.Fprintf(&b, "  authentication = [ %s ]\n", strings.Join(items, ", "))
		}
	}
	return b.String()
}

func writeBool(b *strings.Builder, key string, v *bool) {
	if v != nil {
		fmt.Fprintf(b, "%s = %t\n", key, *v)
	}
}

func writeList(b *strings.Builder, key string, vs []string) {
	if len(vs) == 0 {
		return
	}
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quote(v)
	}
	fmt.Fprintf(b, "%s = [%s]\n", key, strings.Join(q, ", "))
}

// quote writes a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
