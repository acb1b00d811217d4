package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// jump --via: ssh to an agentless target (a host on a jumpoint's network
// that runs no peer). jumpmesh asks for the grant, opens the tunnel through
// the jumpoint, listens on a loopback port for ssh's one connection and
// runs the local OpenSSH client against it; the session is ssh's own
// (its keys, its known_hosts, its terminal handling), jumpmesh only
// carries the bytes, as `forward --via` does.

// viaTarget is jump --via's [USER@]IP[:PORT].
type viaTarget struct {
	user string
	host netip.Addr
	port int
}

// parseViaTarget reads [USER@]IP[:PORT]; an IPv6 address with a port is
// written in brackets ([fd00::7]:2222). Names are refused, as forward
// --via refuses them: the jumpoint's allow list holds addresses, and a name
// would be resolved on the wrong side.
func parseViaTarget(s string) (viaTarget, error) {
	t := viaTarget{port: 22}
	hostport := s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		t.user, hostport = s[:i], s[i+1:]
		if t.user == "" {
			return t, usagef("jump --via %q: the user before @ is empty", s)
		}
	}
	host := hostport
	if a, err := netip.ParseAddr(hostport); err == nil {
		t.host = a // an IPv4 or bare IPv6 address: port 22
		return t, nil
	}
	if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	} else if h, p, err := net.SplitHostPort(hostport); err == nil {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return t, usagef("jump --via %q: the port is 1 to 65535", s)
		}
		host, t.port = h, port
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return t, usagef("jump --via %q: the target is [USER@]IP[:PORT], an IP address on the jumpoint's network, not a name (%s)", s, host)
	}
	t.host = a
	return t, nil
}

// addr is IP:PORT, as the grant names the target.
func (t viaTarget) addr() string { return net.JoinHostPort(t.host.String(), strconv.Itoa(t.port)) }

// hostKeyAlias is the name ssh files the target's host key under when it
// connects to it directly (IP, or [IP]:PORT off port 22): known_hosts
// keeps one entry per real target, shared with direct connections, rather
// than one per local port of a forward on 127.0.0.1.
func (t viaTarget) hostKeyAlias() string {
	if t.port == 22 {
		return t.host.String()
	}
	return "[" + t.host.String() + "]:" + strconv.Itoa(t.port)
}

// sshArgv is the client's command line (without argv[0]). The destination
// comes before the caller's arguments: ssh reads options after it too, and
// the first other word starts the remote command (`-- -i KEY uptime`), so
// the command cannot be mistaken for the destination. ssh keeps the first
// -p and -l it reads, so the caller's cannot send it past the forward.
func sshArgv(t viaTarget, lport int, tty string, extra []string) []string {
	argv := []string{"-p", strconv.Itoa(lport), "-o", "HostKeyAlias=" + t.hostKeyAlias()}
	if t.user != "" {
		argv = append(argv, "-l", t.user)
	}
	if tty != "" {
		argv = append(argv, tty)
	}
	argv = append(argv, "127.0.0.1")
	return append(argv, extra...)
}

// jumpViaFlags are the jump flags that mean something with --via.
type jumpViaFlags struct {
	via                 string
	tty, noTTY, verbose bool
}

// jumpVia is jump --via JUMPOINT [USER@]IP[:PORT] [-- SSH-ARGS...]: the
// exit code is ssh's; jumpmesh's own failures (no ssh, no grant, the
// jumpoint refuses or is unreachable) exit 255 before ssh starts.
func jumpVia(cc *cli.Context, f jumpViaFlags) (err error) {
	defer func() {
		var exit exitCodeError
		if err != nil && !errors.As(err, &exit) {
			err = jumpFailure{err}
		}
	}()
	if cc.NArg() == 0 {
		return usagef("jump --via %s needs [USER@]IP[:PORT]", f.via)
	}
	if cc.IsSet("wait-direct") {
		return usagef("jump --via: --wait-direct is for peers; the jumpoint is reached as it can be")
	}
	args := cc.Args().Slice()
	target, err := parseViaTarget(args[0])
	if err != nil {
		return err
	}
	extra := args[1:]
	if len(extra) > 0 && extra[0] == "--" {
		extra = extra[1:]
	}
	tty := "" // ssh's own choice; -T wins over -t, as in jump to a peer
	switch {
	case f.noTTY:
		tty = "-T"
	case f.tty:
		tty = "-t"
	}
	sshPath, err := exec.LookPath("ssh")
	if err != nil {
		return catalog.Errorf(catalog.CodeInvalidArgument, "jump --via runs the OpenSSH client, ssh, and none is in PATH "+
			"(install openssh-client, or use jumpmesh forward --via with a client of your choice)")
	}

	c, err := openConsole(cc)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cc.Context
	v, err := c.JumpVia(ctx, f.via, target.addr())
	if err != nil {
		return err
	}
	// The tunnel is opened now, so that the jumpoint's refusal (a list it
	// has not learned yet, a target that does not answer) is jumpmesh's
	// error, not a connection ssh sees closed.
	tun, err := v.Dial(ctx)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tun.Close()
		return catalog.Errorf(catalog.CodeInvalidArgument, "Cannot listen on 127.0.0.1: %v", err)
	}
	lport := ln.Addr().(*net.TCPAddr).Port
	log := cc.App.ErrWriter
	if f.verbose {
		fmt.Fprintf(log, "jumpmesh: %s via jumpoint %s (%s), ssh through %s\n", v.Target, v.Jumpoint, v.JumpointID(), ln.Addr())
	}

	// The forward outlives a signal to jumpmesh (ssh decides what it does
	// with it) and ends when ssh exits.
	fctx, stopForward := context.WithCancel(context.WithoutCancel(ctx))
	fw := &console.ViaForwarder{Via: v, OnError: func(conn net.Conn, err error) {
		if fctx.Err() == nil {
			fmt.Fprintf(log, "jumpmesh: forward to %s through jumpoint %s: %v\n", v.Target, v.Jumpoint, err)
		}
	}}
	served := make(chan struct{})
	go func() { defer close(served); carryOne(fctx, fw, ln, tun) }()
	defer func() { stopForward(); <-served }()

	cmd := exec.Command(sshPath, sshArgv(target, lport, tty, extra)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, cc.App.Writer, cc.App.ErrWriter
	// ssh runs in jumpmesh's process group, the terminal's foreground one:
	// keys, Ctrl-C and window changes reach it from the terminal as they
	// would without jumpmesh. A signal sent to jumpmesh alone is passed on,
	// and jumpmesh waits for ssh to act on it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return catalog.Errorf(catalog.CodeInvalidArgument, "Cannot run %s: %v", sshPath, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-waited:
			return sshExit(err)
		}
	}
}

// carryOne carries the first connection to ln, ssh's, over tun, and closes
// ln at once: a forward open to anyone on the host for the whole session
// would let another local user through the technician's grant. Someone
// quicker than ssh gets a connection to the target's sshd (no further) and
// ssh fails for all to see.
func carryOne(ctx context.Context, fw *console.ViaForwarder, ln net.Listener, tun net.Conn) {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	conn, err := ln.Accept()
	stop()
	ln.Close()
	if err != nil {
		tun.Close()
		return
	}
	if err := fw.CarryOver(ctx, conn, tun); err != nil && fw.OnError != nil {
		fw.OnError(conn, err)
	}
}

// sshExit makes ssh's end jumpmesh's exit code: its status, or 128+n when
// a signal ended it.
func sshExit(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err // nil, or ssh could not be waited for
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitCodeError{128 + int(ws.Signal())}
	}
	return exitCodeError{ee.ExitCode()}
}
