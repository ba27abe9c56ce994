package cli

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// TestSocketErrorsNameTheSocket: a socket that is not charon, or a charon
// that never answers, is named in the error, with what went wrong.
func TestSocketErrorsNameTheSocket(t *testing.T) {
	dir := example(t, "alice-bob")
	alice := filepath.Join(dir, "alice.toml")

	huge := vicitest.NotCharon(t, func(c net.Conn) {
		var hdr [4]byte
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:]))); err != nil {
				return
			}
			binary.BigEndian.PutUint32(hdr[:], 1_200_000_000)
			if _, err := c.Write(hdr[:]); err != nil {
				return
			}
		}
	})
	code, _, errs := runCLI("plan", "-f", alice, "--socket", huge, "--state-dir", t.TempDir())
	if code != ExitFailure || !strings.Contains(errs, huge+" is not a charon VICI socket") {
		t.Errorf("plan against a socket that claims 1.2 GB: exit %d, stderr %q", code, errs)
	}

	silent := vicitest.NotCharon(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	code, _, errs = runCLI("plan", "-f", alice, "--socket", silent, "--state-dir", t.TempDir(), "--timeout", "300ms")
	if code != ExitFailure || !strings.Contains(errs, "charon did not answer on "+silent+" before the deadline") {
		t.Errorf("plan against a silent socket: exit %d, stderr %q", code, errs)
	}
	t.Logf("silent socket: %s", errs)
}
