package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/lab"
)

var labDirFlag = &ucli.StringFlag{
	Name:    "dir",
	Usage:   "lab folder (lab.json, one folder per host with strongswan.conf, charon.vici, charon.log)",
	Value:   lab.DefaultDir,
	EnvVars: []string{"SWANMGR_LAB_DIR"},
}

func labCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "lab",
		Usage: "the lab on this machine: network namespaces alice, bob and eve, each with its own charon (root)",
		Description: "The knowledge-base topology: alice 172.16.98.231, bob 172.31.67.244 and eve 172.20.0.5\n" +
			"on one segment, each host in its own network namespace with its own charon,\n" +
			"strongswan.conf, VICI socket and log under the lab folder. Nothing is created\n" +
			"in the machine's own network namespace and no traffic leaves the lab.",
		Subcommands: []*ucli.Command{
			{
				Name:  "up",
				Usage: "create the namespaces and start one charon per host",
				Flags: []ucli.Flag{labDirFlag,
					&ucli.StringFlag{Name: "backend", Value: string(lab.Libipsec), Usage: "charon's IPsec backend: libipsec (userspace ESP; works without kernel ESP) or kernel (XFRM only: permit/block, no ESP SAs on kernels without ESP)", EnvVars: []string{"SWANMGR_LAB_BACKEND"}},
					&ucli.StringSliceFlag{Name: "host", Usage: "hosts to create (repeat); default alice, bob, eve"},
					&ucli.StringFlag{Name: "prefix", Value: lab.DefaultPrefix, Usage: "namespace name prefix"},
					&ucli.BoolFlag{Name: "verbose", Usage: "log charon's configuration handling in detail (cfg level 2)"},
					&ucli.StringFlag{Name: "topology", Value: string(lab.TopologyFlat), Usage: "flat (every host on one segment) or nat (the first host, alice 192.168.98.231, behind a router namespace that masquerades it as 172.16.0.1)"},
				},
				Action: func(c *ucli.Context) error {
					if err := lab.Check(lab.Backend(c.String("backend"))); err != nil {
						return err
					}
					l, err := lab.Up(c.Context, lab.Options{Dir: c.String("dir"), Backend: lab.Backend(c.String("backend")),
						Prefix: c.String("prefix"), Hosts: c.StringSlice("host"), Verbose: c.Bool("verbose"), Topology: lab.Topology(c.String("topology"))})
					if err != nil {
						return err
					}
					printLab(c, l.Status())
					if r := l.Router; r != nil {
						fmt.Fprintf(c.App.Writer, "\n%s sits behind the router %s (%s inside, %s outside), which masquerades it:\nother hosts see it as %s.\n", l.Hosts[0].Name, r.Netns, r.Inside, r.Outside, r.Outside)
					}
					fmt.Fprintf(c.App.Writer, "\nApply a policy:  swanmgr apply --socket %s --ipsec-backend %s -f examples/alice-bob/alice.toml\n", l.Hosts[0].Socket, rendererBackend(l.Backend))
					fmt.Fprintf(c.App.Writer, "Take it down:    swanmgr lab down --dir %s\n", l.Dir)
					return nil
				},
			},
			{
				Name:  "down",
				Usage: "stop the lab's charons (by pid) and remove every namespace, interface and file it made",
				Flags: []ucli.Flag{labDirFlag},
				Action: func(c *ucli.Context) error {
					l, err := lab.Open(c.String("dir"))
					if errors.Is(err, lab.ErrNotUp) {
						fmt.Fprintf(c.App.Writer, "no lab in %s\n", c.String("dir"))
						return nil
					}
					if err != nil {
						return err
					}
					if err := l.Down(); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "lab in %s is down\n", l.Dir)
					return nil
				},
			},
			{
				Name:  "status",
				Usage: "show the lab's namespaces and charons; exit 1 if any is not running",
				Flags: []ucli.Flag{labDirFlag},
				Action: func(c *ucli.Context) error {
					l, err := lab.Open(c.String("dir"))
					if err != nil {
						return err
					}
					st := l.Status()
					printLab(c, st)
					if !st.OK() {
						return &exitError{code: ExitFailure, err: errors.New("the lab is not healthy (see above); `swanmgr lab down` then `swanmgr lab up` rebuilds it")}
					}
					return nil
				},
			},
			{
				Name:      "send",
				Usage:     "send a message from one lab host to another and show what crossed the wire",
				ArgsUsage: "MESSAGE",
				Flags: []ucli.Flag{labDirFlag,
					&ucli.StringFlag{Name: "from", Required: true, Usage: "sending host"},
					&ucli.StringFlag{Name: "to", Required: true, Usage: "receiving host"},
					&ucli.StringFlag{Name: "proto", Value: "tcp", Usage: "tcp or udp"},
					&ucli.IntFlag{Name: "port", Required: true, Usage: "destination port on the receiver"},
					&ucli.DurationFlag{Name: "timeout", Value: 15 * time.Second, Usage: "give up after"},
					&ucli.BoolFlag{Name: "expect-encrypted", Usage: "exit 1 unless the wire carried only ESP (no clear packet to the port, payload never seen)"},
				},
				Action: labSend,
			},
			{
				Name:  "certs",
				Usage: "issue a throwaway lab CA and a certificate and key per host (ECDSA P-256, the host's address and name as subjectAltName)",
				Description: "Writes ca.pem, <host>.pem and <host>.key (mode 0600) into --out. With a lab up in --dir,\n" +
					"its hosts and addresses are used; otherwise alice, bob and eve at their lab addresses.\n" +
					"The CA's private key is not kept. Lab-only credentials: never use them elsewhere.",
				Flags: []ucli.Flag{labDirFlag,
					&ucli.StringFlag{Name: "out", Required: true, Usage: "folder to write the certificates and keys into"},
					&ucli.StringFlag{Name: "ca-name", Value: "swanmgr lab CA", Usage: "the CA's common name"},
					&ucli.DurationFlag{Name: "validity", Value: 10 * 365 * 24 * time.Hour, Usage: "how long the certificates are valid"},
				},
				Action: labCerts,
			},
			{
				Name:      "restart",
				Usage:     "restart one host's charon (its connections, secrets and SAs are lost, as in a real restart); the lab stays up",
				ArgsUsage: "HOST",
				Flags: []ucli.Flag{labDirFlag,
					&ucli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up when charon has not stopped and answered again after this long"},
				},
				Action: labRestart,
			},
			labHostCommand(),
		},
	}
}

// rendererBackend names the swanmgr --ipsec-backend that fits a lab backend.
func rendererBackend(b lab.Backend) string {
	if b == lab.Kernel {
		return "kernel"
	}
	return "libipsec"
}

func printLab(c *ucli.Context, st lab.Status) {
	fmt.Fprintf(c.App.Writer, "lab %s (backend %s)\n", st.Dir, st.Backend)
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tNAMESPACE\tCHARON\tVICI SOCKET")
	for _, h := range st.Hosts {
		state := "stopped"
		switch {
		case h.Running && h.Answers:
			state = fmt.Sprintf("running (pid %d)", h.Pid)
		case h.Running:
			state = fmt.Sprintf("not answering (pid %d)", h.Pid)
		}
		if !h.NetnsUp {
			state = "namespace missing"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, h.Addr, h.Netns, state, h.Socket)
	}
	tw.Flush()
}

func labSend(c *ucli.Context) error {
	msg := strings.Join(c.Args().Slice(), " ")
	if msg == "" {
		return usageErrorf("lab send needs a MESSAGE")
	}
	l, err := lab.Open(c.String("dir"))
	if err != nil {
		return err
	}
	from, to := l.Host(c.String("from")), l.Host(c.String("to"))
	if from == nil || to == nil {
		return usageErrorf("--from and --to must be lab hosts (%s)", hostNames(l))
	}
	proto, port := c.String("proto"), c.Int("port")
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	capture, err := to.StartCapture(ctx, fmt.Sprintf("host %s and (%s port %d or udp port 500 or udp port 4500 or esp)", from.Addr, proto, port))
	if err != nil {
		return err
	}
	got, sendErr := lab.Send(ctx, from, to, proto, port, []byte(msg))
	// The last packets (the peer's acknowledgements) may trail the data.
	settle, cancelSettle := context.WithTimeout(c.Context, 300*time.Millisecond)
	capture.WaitFor(settle, func(string) bool { return false })
	cancelSettle()
	lines := capture.Stop()
	if sendErr != nil {
		// Say what happened in the lab's words, not the socket's.
		if n := lab.Summarize(lines, port).ClearTo[port]; n > 0 {
			return fmt.Errorf("%s → %s %s/%d did not arrive: %d clear packets left %s and were not answered (a block rule or the guard drops them, or nothing listens)", from.Name, to.Name, proto, port, n, from.Name)
		}
		return fmt.Errorf("%s → %s %s/%d did not arrive within %s: nothing for the port crossed %s's wire (dropped on %s: a block rule, the guard, or no SA) — %v", from.Name, to.Name, proto, port, c.Duration("timeout"), to.Name, from.Name, sendErr)
	}
	fmt.Fprintf(c.App.Writer, "%s → %s %s/%d: %q arrived (%d bytes)\n", from.Name, to.Name, proto, port, got, len(got))
	sum := lab.Summarize(lines, port)
	onlyESP, seen := sum.OnlyESP(lines, port, msg)
	clear := sum.ClearTo[port]
	fmt.Fprintf(c.App.Writer, "on %s's wire: %s, %s, %d clear %s/%d %s; the message was %s\n",
		to.Name, plural(sum.ESP, "ESP packet"), plural(sum.IKE, "IKE packet"), clear, proto, port, map[bool]string{true: "packet", false: "packets"}[clear == 1],
		map[bool]string{true: "SEEN IN CLEAR", false: "never seen in clear"}[seen])
	if string(got) != msg {
		return fmt.Errorf("%s received %q, not the message sent", to.Name, got)
	}
	if c.Bool("expect-encrypted") && !onlyESP {
		return errors.New("the wire did not carry only ESP")
	}
	return nil
}

func labRestart(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("lab restart needs one HOST")
	}
	l, err := lab.Open(c.String("dir"))
	if err != nil {
		return err
	}
	h := l.Host(c.Args().First())
	if h == nil {
		return usageErrorf("%q is not a host of the lab in %s (%s)", c.Args().First(), l.Dir, hostNames(l))
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	old := h.Pid
	start := time.Now()
	if err := h.RestartCharon(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: charon restarted (pid %d, was %d) in %v; %s answers\n", h.Name, h.Pid, old, time.Since(start).Round(time.Millisecond), h.Socket)
	return nil
}

func hostNames(l *lab.Lab) string {
	var ns []string
	for _, h := range l.Hosts {
		ns = append(ns, h.Name)
	}
	return strings.Join(ns, ", ")
}

func labCerts(c *ucli.Context) error {
	hosts := lab.DefaultCertHosts()
	if l, err := lab.Open(c.String("dir")); err == nil {
		hosts = l.CertHosts()
	} else if !errors.Is(err, lab.ErrNotUp) {
		return err
	}
	got, err := lab.IssueCerts(c.String("out"), lab.CertOptions{CAName: c.String("ca-name"), Hosts: hosts, Validity: c.Duration("validity")})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "lab CA %q: %s\n", c.String("ca-name"), got.CA)
	for _, h := range hosts {
		fmt.Fprintf(c.App.Writer, "%s (%s): %s, key %s\n", h.Name, h.Addr, got.Certs[h.Name], got.Keys[h.Name])
	}
	return nil
}
