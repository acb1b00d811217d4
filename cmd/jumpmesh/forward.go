package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
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
	var f struct{ verbose bool }
	return &cli.Command{
		Name:      "forward",
		Usage:     "forward local TCP ports through a peer, like ssh -L",
		ArgsUsage: "PEER [BIND:]LPORT:HOST:PORT ...",
		UsageText: "jumpmesh forward PEER [BIND:]LPORT:HOST:PORT ... [-v]\n\n" +
			"Examples:\n" +
			"  jumpmesh forward web-01 8080:localhost:80\n" +
			"  jumpmesh forward web-01 0.0.0.0:2222:10.0.0.5:22 5432:db.lan:5432",
		Description: "Each connection to a local port is carried to the peer, which connects to HOST:PORT (the host\n" +
			"itself with localhost, or a machine on its LAN). Many connections at once; half-close is kept.\n" +
			"Runs until interrupted.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "v", Destination: &f.verbose, Usage: "print each connection and the path taken"}},
		Action: func(cc *cli.Context) error {
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
			home, err := homeDir(cc)
			if err != nil {
				return err
			}
			c, err := console.Open(home)
			if err != nil {
				return err
			}
			defer c.Close()
			fw := &forwarder{c: c, ref: cc.Args().First(), verbose: f.verbose, log: cc.App.ErrWriter}
			if err := fw.refresh(cc.Context); err != nil {
				return err
			}
			defer func() { fw.jump().ReportPath(context.WithoutCancel(cc.Context)) }()
			return fw.serve(cc.Context, specs, cc.App.Writer)
		},
	}
}

// forwarder serves the local listeners of one forward command.
type forwarder struct {
	c       *console.Client
	ref     string
	verbose bool
	log     interface{ Write([]byte) (int, error) }
	mu      sync.Mutex
	j       *console.Jump
}

// refresh asks for a new grant (the first, or after the connection the
// old one was bound to went away), reporting how the old one connected.
func (f *forwarder) refresh(ctx context.Context) error {
	j, err := f.c.Jump(ctx, f.ref, grant.Forward)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.j
	f.j = j
	f.mu.Unlock()
	if old != nil {
		old.ReportPath(context.WithoutCancel(ctx))
	}
	return nil
}

func (f *forwarder) jump() *console.Jump {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.j
}

func (f *forwarder) serve(ctx context.Context, specs []forwardSpec, out interface{ Write([]byte) (int, error) }) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, s := range specs {
		ln, err := net.Listen("tcp", s.listenAddr)
		if err != nil {
			return mesh.Errorf(mesh.CodeInvalidArgument, "Cannot listen on %s: %v", s.listenAddr, err)
		}
		lns = append(lns, ln)
		fmt.Fprintf(out, "forwarding %s -> %s -> %s\n", ln.Addr(), f.jump().Peer.GetPeer().GetSettings().GetName(), net.JoinHostPort(s.host, strconv.Itoa(s.port)))
	}
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.accept(ctx, ln, specs[i])
		}()
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
	return nil
}

func (f *forwarder) accept(ctx context.Context, ln net.Listener, s forwardSpec) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer conn.Close()
			if err := f.carry(ctx, conn, s); err != nil {
				fmt.Fprintf(f.log, "jumpmesh: forward %s: %v\n", conn.RemoteAddr(), err)
			}
		}()
	}
}

// carry opens a channel for one local connection and copies both ways.
func (f *forwarder) carry(ctx context.Context, conn net.Conn, s forwardSpec) error {
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: s.host, Port: uint32(s.port)}}}
	ch, err := f.jump().Open(ctx, open)
	if mesh.HasCode(err, mesh.CodeGrantInvalid) {
		if err = f.refresh(ctx); err == nil {
			ch, err = f.jump().Open(ctx, open)
		}
	}
	if err != nil {
		return err
	}
	defer ch.Close()
	if f.verbose {
		fmt.Fprintf(f.log, "jumpmesh: %s -> %s:%d via %s\n", conn.RemoteAddr(), s.host, s.port, f.jump().Path())
	}
	_, _, err = console.Forward(ctx, ch, conn)
	return err
}
