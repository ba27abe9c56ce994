package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/vici"
)

// DefaultHostDir is the folder of `lab host`: strongswan.conf, the VICI
// socket and charon's log. Not under /run, as in the namespace lab.
const DefaultHostDir = "/var/lib/swanmgr/host"

// labHostCommand is one lab host on its own: the docker-compose lab's
// entrypoint (docker/entrypoint.sh). It writes strongswan.conf exactly as
// `lab up` does for each of its hosts, starts charon in the current
// network namespace, waits for its VICI socket, checks that charon loaded
// every plugin and can resolve every protocol the policy needs, applies
// the policy, and then runs the policy agent in the foreground until
// SIGTERM (docker stop) or charon exits. --health is the image's HEALTHCHECK. The e2e
// test TestDockerLab runs it in real containers.
func labHostCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "host",
		Usage: "be one lab host here (a container): write strongswan.conf as `lab up` does, start charon, check its plugins, apply the policy, run the policy agent until SIGTERM",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "name", Usage: "host name (alice, bob, eve, ...); required", EnvVars: []string{"SWANMGR_HOST"}},
			&ucli.StringFlag{Name: "dir", Value: DefaultHostDir, Usage: "folder for strongswan.conf, charon.vici and charon.log", EnvVars: []string{"SWANMGR_HOST_DIR"}},
			&ucli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "policy file to apply once charon is up; required", EnvVars: []string{"SWANMGR_POLICY"}},
			backendFlag,
			&ucli.StringFlag{Name: "state-dir", Value: assign.DefaultStateDir, Usage: "where swanmgr records what it loaded", EnvVars: []string{"SWANMGR_STATE_DIR"}},
			insecureFlag,
			&ucli.BoolFlag{Name: "verbose", Usage: "log charon's configuration handling in detail (cfg level 2)"},
			&ucli.BoolFlag{Name: "health", Usage: "only report: exit 0 if the host in --dir has assigned its policy and its charon answers, 1 otherwise (the image's HEALTHCHECK)"},
		},
		Action: runLabHost,
	}
}

func runLabHost(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("lab host takes no arguments")
	}
	files := lab.FilesIn(c.String("dir"))
	if c.Bool("health") {
		return labHostHealth(c, files)
	}
	name, file := c.String("name"), c.String("file")
	if name == "" || file == "" {
		return usageErrorf("lab host needs --name and --file (or SWANMGR_HOST and SWANMGR_POLICY)")
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
			return fmt.Errorf("lab host %s: the libipsec backend needs /dev/net/tun (docker: devices: [/dev/net/tun]): %w", name, err)
		}
	}
	if err := os.Remove(files.Ready); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lab host %s: %w", name, err)
	}
	// What the policy needs of the image, checked before charon would
	// reject it with an error that names neither file nor package.
	protos, err := policyProtocols(c, file)
	if err != nil {
		return err
	}
	if err := lab.CheckProtocols(lab.ProtocolsFile, protos); err != nil {
		return fmt.Errorf("lab host %s: %w", name, err)
	}
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
	if err := checkPlugins(ctx, backend, files.Socket); err != nil {
		return &exitError{code: ExitFailure, err: errors.Join(fmt.Errorf("lab host %s: %w; charon stopped", name, err), ch.Stop())}
	}

	args := []string{"swanmgr", "apply", "-f", file, "--socket", files.Socket,
		"--ipsec-backend", string(backend), "--state-dir", c.String("state-dir")}
	if c.Bool(insecureFlag.Name) {
		args = append(args, "--insecure-secrets")
	}
	if code := Run(ctx, args, w, c.App.ErrWriter); code != ExitOK {
		return &exitError{code: ExitFailure, err: errors.Join(fmt.Errorf("lab host %s: apply of %s failed (exit %d); charon stopped", name, file, code), ch.Stop())}
	}
	if err := os.WriteFile(files.Ready, []byte(fmt.Sprintf("%d\n", ch.Pid)), 0o644); err != nil {
		return errors.Join(fmt.Errorf("lab host %s: %w", name, err), ch.Stop())
	}
	defer os.Remove(files.Ready)
	fmt.Fprintf(w, "lab host %s: policy %s assigned; the policy agent keeps charon converged with it until SIGTERM\n", name, file)

	// The agent, as a deployed host runs it: charon's start action is a
	// one-shot, and a CHILD_SA lost when both ends start at once (the
	// duplicate IKE_SA that carried it deleted) or closed by the peer
	// would otherwise stay down for good.
	agentArgs := []string{"swanmgr", "agent", "-f", file, "--socket", files.Socket,
		"--ipsec-backend", string(backend), "--state-dir", c.String("state-dir")}
	if c.Bool(insecureFlag.Name) {
		agentArgs = append(agentArgs, "--insecure-secrets")
	}
	actx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	agentDone := make(chan int, 1)
	go func() { agentDone <- Run(actx, agentArgs, w, c.App.ErrWriter) }()

	select {
	case <-ctx.Done():
		<-agentDone // it ends with ctx: SIGTERM leaves the assignment in place
	case code := <-agentDone:
		// SIGTERM may end the agent before this select sees ctx end.
		if ctx.Err() == nil {
			return &exitError{code: ExitFailure, err: errors.Join(fmt.Errorf("lab host %s: the policy agent exited (exit %d); charon stopped", name, code), ch.Stop())}
		}
	case <-ch.Done():
		stopAgent()
		<-agentDone
		return fmt.Errorf("lab host %s: charon (pid %d) exited: %v", name, ch.Pid, ch.Err())
	}
	fmt.Fprintf(w, "lab host %s: stopping charon (pid %d)\n", name, ch.Pid)
	return ch.Stop()
}

// policyProtocols returns the protocol names the policy's filters use.
func policyProtocols(c *ucli.Context, file string) ([]string, error) {
	data, err := model.ReadFile(file)
	if err != nil {
		return nil, err
	}
	// Warnings are shown once, by the apply that follows.
	a, _, err := model.ParseValidate(file, data, validateOptions(c))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range a.Rules {
		for _, f := range r.Filters {
			if p := f.ProtoString(); p != "" && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// checkPlugins fails when charon did not load a plugin of the lab's list:
// charon starts without a plugin it cannot load and fails only later
// ("AES_GCM_16 (key size 256) not supported!").
func checkPlugins(ctx context.Context, b lab.Backend, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := vici.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.Stats(ctx)
	if err != nil {
		return err
	}
	if missing := lab.MissingPlugins(b, st.Plugins); len(missing) > 0 {
		return fmt.Errorf("charon did not load the plugins %s: the image lacks the packages named", strings.Join(missing, ", "))
	}
	return nil
}

// labHostHealth is --health: the policy is assigned (the ready file) and
// charon answers on its socket.
func labHostHealth(c *ucli.Context, files lab.HostFiles) error {
	if _, err := os.Stat(files.Ready); err != nil {
		return fmt.Errorf("lab host: not ready: the policy is not assigned (yet): %w", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, 4*time.Second)
	defer cancel()
	cl, err := vici.Dial(ctx, files.Socket)
	if err != nil {
		return fmt.Errorf("lab host: charon does not answer: %w", err)
	}
	defer cl.Close()
	if _, err := cl.Stats(ctx); err != nil {
		return fmt.Errorf("lab host: charon does not answer: %w", err)
	}
	fmt.Fprintln(c.App.Writer, "lab host: healthy: policy assigned, charon answers")
	return nil
}
