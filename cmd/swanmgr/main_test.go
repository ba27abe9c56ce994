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

func TestHasFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"swanmgr", "status"}, false},
		{[]string{"swanmgr", "status", "--watch"}, true},
		{[]string{"swanmgr", "status", "-w", "--interval", "1s"}, true},
		{[]string{"swanmgr", "status", "-watch=true"}, true},
		{[]string{"swanmgr", "status", "--watch=false"}, false},
		{[]string{"swanmgr", "status", "--watch=T"}, true},
		{[]string{"swanmgr", "status", "--rule", "watch"}, false},
		{[]string{"swanmgr", "status", "--", "--watch"}, false},
	} {
		if got := hasFlag(c.args, "watch", "w"); got != c.want {
			t.Errorf("hasFlag(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}
