package status

import (
	"strconv"
	"time"

	"github.com/swanmgr/swanmgr/internal/jsonenc"
)

// appendSA encodes one SA row exactly as encoding/json does (with HTML
// escaping off), several times faster: a view of thousands of SAs is
// written on the path an operator waits for. TestAppendSAMatchesJSON holds
// it to encoding/json's output for every field; a field added to SA must
// be added here too.
func appendSA(b []byte, r *SA) []byte {
	b = append(b, `{"managed":`...)
	b = strconv.AppendBool(b, r.Managed)
	b = append(b, `,"guarded":`...)
	b = strconv.AppendBool(b, r.Guarded)
	b = appendKeyStrPtr(b, "policy", r.Policy)
	b = appendKeyStrPtr(b, "rule", r.Rule)
	b = appendKeyStrPtr(b, "filter_list", r.FilterList)
	b = appendKeyIntPtr(b, "filter", r.Filter)
	b = appendKeyStrPtr(b, "filter_summary", r.FilterText)
	b = appendKeyStrPtr(b, "action", r.Action)
	b = appendKeyStr(b, "connection", r.Connection)
	b = appendKeyStr(b, "child", r.Child)
	b = appendKeyStrPtr(b, "peer", r.Peer)
	b = appendKeyStr(b, "state", r.State)
	b = append(b, `,"has_sa":`...)
	b = strconv.AppendBool(b, r.HasSA)
	b = appendKeyU64Ptr(b, "ike_sa_id", r.IKESAID)
	b = appendKeyU64Ptr(b, "child_sa_id", r.ChildSAID)
	b = append(b, `,"source":`...)
	b = appendEndpoint(b, &r.Source)
	b = append(b, `,"destination":`...)
	b = appendEndpoint(b, &r.Destination)
	b = appendKeyStrPtr(b, "protocol", r.Protocol)
	b = appendKeyStrPtr(b, "tunnel_endpoint", r.TunnelEndpoint)
	b = append(b, `,"host_to_host_tunnel":`...)
	b = strconv.AppendBool(b, r.HostToHostTunnel)
	b = appendKeyStrPtr(b, "mode", r.Mode)
	b = append(b, `,"udp_encapsulation":`...)
	if r.UDPEncap == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendBool(b, *r.UDPEncap)
	}
	b = append(b, `,"security":`...)
	b = appendSecurity(b, r.Security)
	b = appendKeyU64Ptr(b, "bytes_in", r.BytesIn)
	b = appendKeyU64Ptr(b, "bytes_out", r.BytesOut)
	b = appendKeyU64Ptr(b, "packets_in", r.PacketsIn)
	b = appendKeyU64Ptr(b, "packets_out", r.PacketsOut)
	b = appendKeyTimePtr(b, "established_at", r.EstablishedAt)
	b = appendKeyI64Ptr(b, "established_seconds", r.EstablishedSeconds)
	b = appendKeyTimePtr(b, "rekey_at", r.RekeyAt)
	b = appendKeyI64Ptr(b, "rekey_in_seconds", r.RekeyInSeconds)
	b = appendKeyTimePtr(b, "expires_at", r.ExpiresAt)
	b = appendKeyI64Ptr(b, "expires_in_seconds", r.ExpiresInSeconds)
	b = appendKeyStrPtr(b, "note", r.Note)
	return append(b, '}')
}

func appendEndpoint(b []byte, e *Endpoint) []byte {
	b = append(b, `{"addresses":`...)
	b = appendStrings(b, e.Addresses)
	b = append(b, `,"any_port":`...)
	b = strconv.AppendBool(b, e.AnyPort)
	b = appendKeyIntPtr(b, "port", e.Port)
	b = append(b, `,"port_range":`...)
	if e.PortRange == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(e.PortRange[0]), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(e.PortRange[1]), 10)
		b = append(b, ']')
	}
	b = append(b, `,"selectors":`...)
	b = appendStrings(b, e.Selectors)
	return append(b, '}')
}

func appendSecurity(b []byte, s *Security) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"text":`...)
	b = appendJSONString(b, s.Text)
	b = appendKeyStrPtr(b, "protocol", s.Protocol)
	b = appendKeyStrPtr(b, "encryption", s.Encryption)
	b = appendKeyIntPtr(b, "encryption_keysize", s.EncryptionKeySize)
	b = appendKeyStrPtr(b, "integrity", s.Integrity)
	b = appendKeyIntPtr(b, "integrity_keysize", s.IntegrityKeySize)
	b = appendKeyStrPtr(b, "dh_group", s.DHGroup)
	b = append(b, `,"confidential":`...)
	if s.Confidential == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendBool(b, *s.Confidential)
	}
	b = appendKeyStrPtr(b, "spi_in", s.SPIIn)
	b = appendKeyStrPtr(b, "spi_out", s.SPIOut)
	b = append(b, `,"configured_proposals":`...)
	b = appendStrings(b, s.ConfiguredProposals)
	b = appendKeyStrPtr(b, "configured_pfs_group", s.ConfiguredPFSGroup)
	return append(b, '}')
}

// appendStrings writes a string slice; nil is null, as encoding/json does.
func appendStrings(b []byte, ss []string) []byte { return jsonenc.AppendStrings(b, ss, false) }

func appendKey(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendKeyStr(b []byte, key, s string) []byte {
	return appendJSONString(appendKey(b, key), s)
}

func appendKeyStrPtr(b []byte, key string, s *string) []byte {
	b = appendKey(b, key)
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}

func appendKeyIntPtr(b []byte, key string, n *int) []byte {
	b = appendKey(b, key)
	if n == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, int64(*n), 10)
}

func appendKeyI64Ptr(b []byte, key string, n *int64) []byte {
	b = appendKey(b, key)
	if n == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, *n, 10)
}

func appendKeyU64Ptr(b []byte, key string, n *uint64) []byte {
	b = appendKey(b, key)
	if n == nil {
		return append(b, "null"...)
	}
	return strconv.AppendUint(b, *n, 10)
}

func appendKeyTimePtr(b []byte, key string, t *time.Time) []byte {
	b = appendKey(b, key)
	if t == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONString writes s as encoding/json does without HTML escaping.
func appendJSONString(b []byte, s string) []byte { return jsonenc.AppendString(b, s, false) }
