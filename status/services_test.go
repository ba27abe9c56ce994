package status

import (
	"testing"

	"github.com/swanmgr/swanmgr/internal/servicestest"
)

// TestWithEmptyEtcServices runs the tests that read service names charon
// printed (tcp/zabbix-agent, tcp/ircd) again in a private mount namespace
// whose /etc/services is empty, as in an image without netbase: the view
// must be the same there.
func TestWithEmptyEtcServices(t *testing.T) {
	servicestest.RunWithEmpty(t, "TestGolden", "TestParseTSServiceNames")
}
