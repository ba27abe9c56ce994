package render

import (
	"fmt"

	govici "github.com/strongswan/govici/vici"
)

// ConnMessage returns the settings of connection c as a VICI message:
// load-conn sends it as the section named c.Name. Lists stay VICI lists
// (a list key sent as a plain value makes charon discard the connection),
// and certificates are sent as their data.
func ConnMessage(c Conn) (*govici.Message, error) {
	body, err := sectionMessage(c.Body)
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", c.Name, err)
	}
	return body, nil
}

func sectionMessage(s *Section) (*govici.Message, error) {
	m := govici.NewMessage()
	for _, it := range s.All() {
		var v any
		switch {
		case it.Sec != nil:
			sub, err := sectionMessage(it.Sec)
			if err != nil {
				return nil, err
			}
			v = sub
		case len(it.Files()) > 0:
			var data []string
			for _, f := range it.Files() {
				data = append(data, string(f.Data))
			}
			v = data
		case it.IsList:
			v = append([]string{}, it.List...)
		default:
			v = it.Value
		}
		if err := m.Set(it.Key, v); err != nil {
			return nil, fmt.Errorf("%s: %w", it.Key, err)
		}
	}
	return m, nil
}
