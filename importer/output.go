package importer

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/swanmgr/swanmgr/model"
)

// PolicyFile is the policy the importer writes: the keys of
// docs/policy-format.md, empty ones left out. It is encoded by the TOML
// encoder, so names from the script are always quoted and escaped.
type PolicyFile struct {
	Assign        string         `toml:"assign"`
	Endpoint      Endpoint       `toml:"endpoint"`
	FilterLists   []FilterList   `toml:"filter_list,omitempty"`
	FilterActions []FilterAction `toml:"filter_action,omitempty"`
	Policies      []Policy       `toml:"policy"`
}

// Endpoint is [endpoint].
type Endpoint struct {
	Name                  string   `toml:"name,omitempty"`
	Addresses             []string `toml:"addresses"`
	LANInterface          string   `toml:"lan_interface,omitempty"`
	RemoteAccessInterface string   `toml:"remote_access_interface,omitempty"`
}

// FilterList is [[filter_list]].
type FilterList struct {
	Name        string   `toml:"name"`
	Description string   `toml:"description,omitempty"`
	Filters     []Filter `toml:"filter"`
}

// Filter is [[filter_list.filter]]. Protocol is a name or a number.
type Filter struct {
	Description     string `toml:"description,omitempty"`
	Source          string `toml:"source"`
	Destination     string `toml:"destination"`
	Protocol        any    `toml:"protocol,omitempty"`
	SourcePort      int    `toml:"source_port,omitzero"`
	DestinationPort int    `toml:"destination_port,omitzero"`
}

// FilterAction is [[filter_action]].
type FilterAction struct {
	Name           string   `toml:"name"`
	Description    string   `toml:"description,omitempty"`
	Action         string   `toml:"action"`
	Security       string   `toml:"security,omitempty"`
	PFS            bool     `toml:"pfs,omitempty"`
	Guard          *bool    `toml:"guard,omitempty"`
	ESPEncryption  []string `toml:"esp_encryption,omitempty"`
	ESPIntegrity   []string `toml:"esp_integrity,omitempty"`
	AHIntegrity    []string `toml:"ah_integrity,omitempty"`
	PFSGroup       string   `toml:"pfs_group,omitempty"`
	RekeySeconds   int64    `toml:"rekey_seconds,omitzero"`
	RekeyKilobytes int64    `toml:"rekey_kilobytes,omitzero"`
}

// Policy is [[policy]].
type Policy struct {
	Name                string `toml:"name"`
	Description         string `toml:"description,omitempty"`
	DefaultResponseRule bool   `toml:"default_response_rule,omitempty"`
	Rules               []Rule `toml:"rule"`
}

// Rule is [[policy.rule]].
type Rule struct {
	Name           string `toml:"name,omitempty"`
	FilterList     string `toml:"filter_list"`
	FilterAction   string `toml:"filter_action"`
	Network        string `toml:"network,omitempty"`
	TunnelEndpoint string `toml:"tunnel_endpoint,omitempty"`
	Authentication []Auth `toml:"authentication,omitempty"`
	Disabled       bool   `toml:"disabled,omitempty"`
}

// Auth is one authentication method. A preshared key is only ever a
// reference to its key file.
type Auth struct {
	Method     string `toml:"method"`
	SecretFile string `toml:"secret_file,omitempty"`
	// SecretEnv is only set by WithKeysFromEnv, to validate the policy
	// before its key files are written.
	SecretEnv   string `toml:"secret_env,omitempty"`
	CA          string `toml:"ca,omitempty"`
	Certificate string `toml:"certificate,omitempty"`
	PrivateKey  string `toml:"private_key,omitempty"`
}

// Key is a preshared key of the script, to be written to File (relative
// to the output's folder) with mode 0600.
type Key struct {
	File   string
	Secret model.Secret
	Where  string // FILE:LINE of its first use
}

// Note is something the importer did that the operator must know: Where
// is the script's FILE:LINE. Lossy notes are options that have no
// faithful equivalent (what was done instead is in Text).
type Note struct {
	Where string
	Lossy bool
	Text  string
}

func (n Note) String() string {
	kind := "note"
	if n.Lossy {
		kind = "not carried over"
	}
	return fmt.Sprintf("%s: %s: %s", n.Where, kind, n.Text)
}

// Result is an imported policy.
type Result struct {
	Source string // the script's name
	Tool   string // "netsh" or "consec"
	File   PolicyFile
	Keys   []Key
	Notes  []Note
}

// Partial reports whether anything could not be carried over faithfully.
func (r *Result) Partial() bool {
	for _, n := range r.Notes {
		if n.Lossy {
			return true
		}
	}
	return false
}

// TOML is the policy file: a header naming the script and repeating the
// notes as comments, then the policy.
func (r *Result) TOML() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Imported by `swanmgr import %s` from %s.\n", r.Tool, comment(r.Source))
	b.WriteString("# Check it with `swanmgr validate -f <this file>`; docs/import.md says what maps to what.\n")
	if len(r.Notes) > 0 {
		b.WriteString("#\n")
		for _, n := range r.Notes {
			b.WriteString("# " + comment(n.String()) + "\n")
		}
	}
	b.WriteString("\n")
	enc := toml.NewEncoder(&b)
	enc.Indent = "  "
	if err := enc.Encode(r.File); err != nil {
		return nil, fmt.Errorf("importer: %w", err)
	}
	return b.Bytes(), nil
}

// comment makes text safe for one TOML comment line: control characters
// (a newline would end the comment) are written as escapes.
func comment(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// WithKeysFromEnv is the policy with every key file reference replaced by
// an environment variable, and those variables' values: the caller can
// validate the output (model.ValidateOptions.LookupEnv) before it writes
// any file.
func (r *Result) WithKeysFromEnv() (*Result, map[string]model.Secret) {
	env := map[string]model.Secret{}
	byFile := map[string]string{}
	for i, k := range r.Keys {
		name := fmt.Sprintf("SWANMGR_IMPORT_KEY_%d", i+1)
		env[name] = k.Secret
		byFile[k.File] = name
	}
	c := *r
	c.File.Policies = nil
	for _, p := range r.File.Policies {
		np := p
		np.Rules = nil
		for _, rule := range p.Rules {
			nr := rule
			nr.Authentication = nil
			for _, a := range rule.Authentication {
				if v, ok := byFile[a.SecretFile]; ok && a.Method == "psk" {
					a.SecretFile, a.SecretEnv = "", v
				}
				nr.Authentication = append(nr.Authentication, a)
			}
			np.Rules = append(np.Rules, nr)
		}
		c.File.Policies = append(c.File.Policies, np)
	}
	return &c, env
}

// CertFiles are the certificate files the policy names (relative to its
// folder), for the caller to check before validating.
func (r *Result) CertFiles() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range r.File.Policies {
		for _, rule := range p.Rules {
			for _, a := range rule.Authentication {
				for _, f := range []string{a.CA, a.Certificate, a.PrivateKey} {
					if f != "" && !seen[f] {
						seen[f] = true
						out = append(out, f)
					}
				}
			}
		}
	}
	return out
}
