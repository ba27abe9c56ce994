package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/lab"
)

// DefaultHostDir is the folder of `lab host`: strongswan.conf, the VICI
// socket and charon's log. Not under /run, as in the namespace lab.
const DefaultHostDir = "/var/lib/swanmgr/host"

// labHostCommand is one lab host on its own: the docker-compose lab's
// entrypoint (docker/entrypoint.sh). It writes strongswan.conf exactly as
// `lab up` does for each of its hosts, starts charon in the current
// network namespace, waits for its VICI socket, applies the policy, and
// then stays in the foreground until SIGTERM (docker stop) or charon
// exits. The e2e test TestDockerEntrypointInNamespace runs the same
// script inside a lab namespace.
func labHostCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "host",
		Usage: "be one lab host here (a container): write strongswan.conf as `lab up` does, start charon, apply the policy, stay until SIGTERM",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "name", Required: true, Usage: "host name (alice, bob, eve, ...)", EnvVars: []string{"SWANMGR_HOST"}},
			&ucli.StringFlag{Name: "dir", Value: DefaultHostDir, Usage: "folder for strongswan.conf, charon.vici and charon.log", EnvVars: []string{"SWANMGR_HOST_DIR"}},
			&ucli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "policy file to apply once charon is up", EnvVars: []string{"SWANMGR_POLICY"}},
			backendFlag,
			&ucli.StringFlag{Name: "state-dir", Value: assign.DefaultStateDir, Usage: "where swanmgr records what it loaded", EnvVars: []string{"SWANMGR_STATE_DIR"}},
			insecureFlag,
			&ucli.BoolFlag{Name: "verbose", Usage: "log charon's configuration handling in detail (cfg level 2)"},
		},
		Action: runLabHost,
	}
}

func runLabHost(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("lab host takes no arguments")
	}
	backend := lab.Libipsec
	switch b := c.String(backendFlag.Name); b {
	case "kernel":
		backend = lab.Kernel
	case "libipsec":
	default:
		return usageErrorf("--ipsec-backend %q: use kernel or libipsec", b)
	}
	if backend == lab.Libipsec {
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			return fmt.Errorf("lab host: the libipsec backend needs /dev/net/tun (docker: devices: [/dev/net/tun]): %w", err)
		}
	}
	name := c.String("name")
	files := lab.FilesIn(c.String("dir"))
	if err := lab.WriteHostConf(backend, name, files, c.Bool("verbose")); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	w := c.App.Writer
	ch, err := lab.StartLocalCharon(ctx, files, c.App.ErrWriter)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "lab host %s: charon (pid %d) is up, VICI socket %s, log %s, backend %s\n", name, ch.Pid, files.Socket, files.Log, backend)

	args := []string{"swanmgr", "apply", "-f", c.String("file"), "--socket", files.Socket,
		"--ipsec-backend", string(backend), "--state-dir", c.String("state-dir")}
	if c.Bool(insecureFlag.Name) {
		args = append(args, "--insecure-secrets")
	}
	if code := Run(ctx, args, w, c.App.ErrWriter); code != ExitOK {
		return &exitError{code: ExitFailure, err: errors.Join(fmt.Errorf("lab host %s: apply of %s failed (exit %d); charon stopped", name, c.String("file"), code), ch.Stop())}
	}
	fmt.Fprintf(w, "lab host %s: policy %s assigned; running until SIGTERM\n", name, c.String("file"))

	select {
	case <-ctx.Done():
		fmt.Fprintf(w, "lab host %s: stopping charon (pid %d)\n", name, ch.Pid)
		return ch.Stop()
	case <-ch.Done():
		return fmt.Errorf("lab host %s: charon (pid %d) exited: %v", name, ch.Pid, ch.Err())
	}
}
