package probe

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

const magic = "JMPROBE1"

// RetryInterval is how long a UDP probe waits for a reply before sending
// again.
const RetryInterval = 200 * time.Millisecond

// maxProbe bounds a probe datagram; anything longer is not a probe.
const maxProbe = 512

// ServeUDP answers every probe arriving on pc until pc is closed, then
// returns nil. Datagrams that are not probes are ignored.
func ServeUDP(pc net.PacketConn) error {
	buf := make([]byte, maxProbe)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		token, ok := parseRequest(buf[:n])
		if !ok {
			continue
		}
		src, err := addrPort(from)
		if err != nil {
			continue
		}
		reply := fmt.Sprintf("%s %s %s", magic, token, src)
		if _, err := pc.WriteTo([]byte(reply), from); err != nil && errors.Is(err, net.ErrClosed) {
			return nil
		}
	}
}

// ServeTCP answers every connection accepted on ln with the address it came
// from, until ln is closed, then returns nil.
func ServeTCP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if src, err := addrPort(c.RemoteAddr()); err == nil {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = fmt.Fprintf(c, "%s - %s\n", magic, src)
		}
		c.Close()
	}
}

// UDP probes server from pc and returns the address the server saw. It sends
// a probe every RetryInterval until a matching reply arrives or ctx ends.
// Datagrams other than the reply are discarded.
func UDP(ctx context.Context, pc net.PacketConn, server netip.AddrPort) (netip.AddrPort, error) {
	token := newToken()
	req := []byte(magic + " " + token)
	dst := net.UDPAddrFromAddrPort(server)
	buf := make([]byte, maxProbe)
	defer pc.SetReadDeadline(time.Time{})
	for {
		if err := ctx.Err(); err != nil {
			return netip.AddrPort{}, fmt.Errorf("probing %v: %w", server, err)
		}
		if _, err := pc.WriteTo(req, dst); err != nil {
			return netip.AddrPort{}, fmt.Errorf("probing %v: %w", server, err)
		}
		deadline := time.Now().Add(RetryInterval)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = pc.SetReadDeadline(deadline)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // send again
				}
				return netip.AddrPort{}, fmt.Errorf("probing %v: %w", server, err)
			}
			if seen, ok := parseReply(buf[:n], token); ok {
				return seen, nil
			}
		}
	}
}

// TCP reads the server's answer on a connection to a probe server.
func TCP(ctx context.Context, c net.Conn) (netip.AddrPort, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(d)
		defer c.SetReadDeadline(time.Time{})
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading probe answer: %w", err)
	}
	seen, ok := parseReply([]byte(strings.TrimSuffix(line, "\n")), "-")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("not a probe answer: %q", line)
	}
	return seen, nil
}

func parseRequest(b []byte) (token string, ok bool) {
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != magic {
		return "", false
	}
	return f[1], true
}

func parseReply(b []byte, token string) (netip.AddrPort, bool) {
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != magic || f[1] != token {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(f[2])
	return ap, err == nil
}

func addrPort(a net.Addr) (netip.AddrPort, error) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return unmap(a.AddrPort()), nil
	case *net.TCPAddr:
		return unmap(a.AddrPort()), nil
	}
	return netip.ParseAddrPort(a.String())
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
