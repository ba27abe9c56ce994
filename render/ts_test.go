package render_test

import (
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/internal/servicestest"
	"github.com/swanmgr/swanmgr/render"
)

// TestWithEmptyEtcServices runs the selector tests again in a private
// mount namespace whose /etc/services is empty, as in an image without
// netbase: the service names charon prints must parse the same there.
func TestWithEmptyEtcServices(t *testing.T) {
	servicestest.RunWithEmpty(t, "TestParseTSDashedServiceName", "TestParseTSServiceNames", "TestTrafficSelectors", "TestGolden")
}

func TestParseTSServiceNames(t *testing.T) {
	for in, want := range map[string][2]int{
		"10.0.0.1/32[tcp/ircd]":         {6667, 6667},
		"10.0.0.1/32[udp/domain]":       {53, 53},
		"10.0.0.1/32[6/https]":          {443, 443},
		"10.0.0.1/32[udp/ntp-1000]":     {123, 1000},
		"10.0.0.1/32[tcp/zabbix-agent]": {10050, 10050},
		"10.0.0.1/32[sctp/http]":        {80, 80},
	} {
		got, err := render.ParseTS(in)
		if err != nil || got.PortLo != want[0] || got.PortHi != want[1] {
			t.Errorf("ParseTS(%q) = %d-%d, %v; want %d-%d", in, got.PortLo, got.PortHi, err, want[0], want[1])
		}
	}
	if _, err := render.ParseTS("10.0.0.1/32[tcp/no-such-service]"); err == nil || !strings.Contains(err.Error(), `unknown port "no-such-service"`) {
		t.Errorf("unknown name: %v", err)
	}
}

func TestProtoName(t *testing.T) {
	for n, want := range map[int]string{1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 58: "ipv6-icmp", 132: "sctp", 50: "50"} {
		if got := render.ProtoName(n); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", n, got, want)
		}
		if n == 50 {
			continue
		}
		if ts, err := render.ParseTS("10.0.0.1/32[" + want + "]"); err != nil || ts.Proto != n {
			t.Errorf("ParseTS of %s: %+v %v", want, ts, err)
		}
	}
}
