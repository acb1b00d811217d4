package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
)

// forwardSpec is one [BIND:]LPORT:HOST:PORT.
type forwardSpec struct {
	bind       string
	lport      int
	host       string
	port       int
	listenAddr string
}

func parseForwardSpec(s string) (forwardSpec, error) {
	parts := strings.Split(s, ":")
	var f forwardSpec
	switch len(parts) {
	case 3:
		f.bind = "127.0.0.1"
	case 4:
		f.bind, parts = parts[0], parts[1:]
	default:
		return f, usagef("forward %q: write [BIND:]LPORT:HOST:PORT, e.g. 8080:localhost:80", s)
	}
	var err1, err2 error
	f.lport, err1 = strconv.Atoi(parts[0])
	f.host = parts[1]
	f.port, err2 = strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || f.lport < 0 || f.lport > 65535 || f.port < 1 || f.port > 65535 || f.host == "" {
		return f, usagef("forward %q: ports are 1 to 65535 (local 0 picks one), host is a name or address", s)
	}
	f.listenAddr = net.JoinHostPort(f.bind, strconv.Itoa(f.lport))
	return f, nil
}

func forwardCommand() *cli.Command {
	var f struct {
		verbose bool
		via     string
		noBulk  bool
	}
	return &cli.Command{
		Name:      "forward",
		Usage:     "forward local TCP ports through a peer, like ssh -L, or through a jumpoint to a host without a peer",
		ArgsUsage: "PEER [BIND:]LPORT:HOST:PORT ...",
		UsageText: "jumpmesh forward PEER [BIND:]LPORT:HOST:PORT ... [-v]\n" +
			"jumpmesh forward --via JUMPOINT [BIND:]LPORT:IP:PORT ... [-v]\n\n" +
			"Examples:\n" +
			"  jumpmesh forward web-01 8080:localhost:80\n" +
			"  jumpmesh forward web-01 0.0.0.0:2222:10.0.0.5:22 5432:db.lan:5432\n" +
			"  jumpmesh forward web-01 --wake 3389:localhost:3389\n" +
			"  jumpmesh forward --via plant-a 2222:10.20.0.7:22 3389:10.20.0.8:3389",
		Description: "Each connection to a local port is carried to the peer, which connects to HOST:PORT (the host\n" +
			"itself with localhost, or a machine on its LAN). Many connections at once; half-close is kept.\n" +
			"Runs until interrupted. A passive peer is woken first; with --wake an offline one too (see jump).\n\n" +
			"With --via, no peer is involved: the jumpoint connects to IP:PORT on its network (an agentless\n" +
			"target), if the target is in the jumpoint's allow list and you may use it (administrators, and\n" +
			"members of the jump groups it names: see jumpmesh jumpoint list). The coordinator audits the\n" +
			"grant and the jumpoint reports every connection with its bytes (jumpmesh audit --kind tunnel).\n" +
			"The jumpoint sees what the connection carries unless its protocol encrypts it (ssh, RDP, HTTPS).",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "v", Destination: &f.verbose, Usage: "print each connection and the path taken"},
			&cli.StringFlag{Name: "via", Destination: &f.via, Usage: "reach hosts without a peer through this jumpoint (name or peer ID)"},
			&cli.BoolFlag{Name: "no-bulk", Destination: &f.noBulk, Usage: "carry every connection on the session's channel: ask the peer for no bulk connection of its own"},
		}, wakeFlags()...),
		Action: func(cc *cli.Context) error {
			if err := checkWakeTimeout(cc); err != nil {
				return err
			}
			if f.via != "" {
				return forwardVia(cc, f.via, f.verbose)
			}
			if cc.NArg() < 2 {
				return usagef("forward needs a PEER and at least one [BIND:]LPORT:HOST:PORT")
			}
			var specs []forwardSpec
			for _, a := range cc.Args().Slice()[1:] {
				s, err := parseForwardSpec(a)
				if err != nil {
					return err
				}
				specs = append(specs, s)
			}
			return withJump(cc, cc.Args().First(), console.Need{Capability: grant.Forward}, func(j *console.Jump) error {
				fw := console.ForwardThrough(j)
				fw.NoBulk = f.noBulk
				defer fw.Close(cc.Context)
				log := cc.App.ErrWriter
				fw.OnError = func(conn net.Conn, err error) { fmt.Fprintf(log, "jumpmesh: forward %s: %v\n", conn.RemoteAddr(), err) }
				if f.verbose {
					fw.OnConnect = func(conn net.Conn, to console.ForwardTarget, path console.Path) {
						fmt.Fprintf(log, "jumpmesh: %s -> %s:%d via %s\n", conn.RemoteAddr(), to.Host, to.Port, path)
					}
				}
				return serveForwards(cc.Context, fw, specs, cc.App.Writer)
			})
		},
	}
}

// serveForwards listens on every spec and carries their connections
// through fw until ctx ends.
func serveForwards(ctx context.Context, fw *console.Forwarder, specs []forwardSpec, out io.Writer) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, s := range specs {
		ln, err := net.Listen("tcp", s.listenAddr)
		if err != nil {
			return catalog.Errorf(catalog.CodeInvalidArgument, "Cannot listen on %s: %v", s.listenAddr, err)
		}
		lns = append(lns, ln)
		fmt.Fprintf(out, "forwarding %s -> %s -> %s\n", ln.Addr(), fw.Jump().Peer.GetPeer().GetSettings().GetName(), net.JoinHostPort(s.host, strconv.Itoa(s.port)))
	}
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fw.Serve(ctx, ln, console.ForwardTarget{Host: specs[i].host, Port: specs[i].port})
		}()
	}
	wg.Wait()
	return nil
}

// forwardVia is forward --via: one grant per target, each local
// connection one tunnel through the jumpoint.
func forwardVia(cc *cli.Context, via string, verbose bool) error {
	if cc.NArg() < 1 {
		return usagef("forward --via needs at least one [BIND:]LPORT:IP:PORT")
	}
	var specs []forwardSpec
	for _, a := range cc.Args().Slice() {
		s, err := parseForwardSpec(a)
		if err != nil {
			return err
		}
		if _, err := netip.ParseAddr(strings.Trim(s.host, "[]")); err != nil {
			return usagef("forward --via %q: the target is an IP address on the jumpoint's network, not a name (%s)", a, s.host)
		}
		specs = append(specs, s)
	}
	c, err := openConsole(cc)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cc.Context
	log := cc.App.ErrWriter
	var lns []net.Listener
	var fws []*console.ViaForwarder
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, s := range specs {
		target := net.JoinHostPort(strings.Trim(s.host, "[]"), strconv.Itoa(s.port))
		v, err := c.JumpVia(ctx, via, target)
		if err != nil {
			return err
		}
		fw := &console.ViaForwarder{Via: v}
		fw.OnError = func(conn net.Conn, err error) { fmt.Fprintf(log, "jumpmesh: forward %s: %v\n", conn.RemoteAddr(), err) }
		if verbose {
			fw.OnConnect = func(conn net.Conn) {
				fmt.Fprintf(log, "jumpmesh: %s -> %s via jumpoint %s\n", conn.RemoteAddr(), v.Target, v.Jumpoint)
			}
		}
		ln, err := net.Listen("tcp", s.listenAddr)
		if err != nil {
			return catalog.Errorf(catalog.CodeInvalidArgument, "Cannot listen on %s: %v", s.listenAddr, err)
		}
		lns = append(lns, ln)
		fws = append(fws, fw)
		fmt.Fprintf(cc.App.Writer, "forwarding %s -> jumpoint %s -> %s\n", ln.Addr(), v.Jumpoint, v.Target)
	}
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Go(func() { fws[i].Serve(ctx, ln) })
	}
	wg.Wait()
	return nil
}
