package main

import "testing"

func TestCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"swanmgr"}, ""},
		{[]string{"swanmgr", "apply", "-f", "p.toml"}, "apply"},
		{[]string{"swanmgr", "--version"}, ""},
		{[]string{"swanmgr", "--version", "agent"}, "agent"},
	} {
		if got := command(c.args); got != c.want {
			t.Errorf("command(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}
