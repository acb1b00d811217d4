package peer

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// fwdDefaultDialTimeout applies when ServeForward is given no timeout.
const fwdDefaultDialTimeout = 10 * time.Second

// fwdUnreachable is the catalog code of a failed dial; the detail names
// the target.
const fwdUnreachable = catalog.CodeForwardUnreachable

// ServeForward serves an accepted forward channel (after Ready): it dials
// open's host:port from this host ("localhost" is the host itself; any
// other name or address is reached from here, e.g. a machine on its LAN),
// tells the console the outcome with channel.SendStatus, and then splices
// raw bytes both ways with half-close until both directions end. It closes
// the channel. The error is the dial's catalog error or what broke the
// splice; a forward that ran to its end returns nil.
func ServeForward(ctx context.Context, ch *channel.Channel, open *pb.ForwardOpen, dialTimeout time.Duration) error {
	conn, err := fwdDial(ctx, open, dialTimeout)
	if err != nil {
		_ = ch.SendStatus(err)
		_ = ch.Close()
		return err
	}
	if err := ch.SendStatus(nil); err != nil {
		_ = conn.Close()
		_ = ch.Reset()
		return err
	}
	_, _, err = ch.Splice(ctx, conn)
	return err
}

// fwdDial connects to the forward's target. Its errors are what the
// technician reads, so they name the target as the peer sees it.
func fwdDial(ctx context.Context, open *pb.ForwardOpen, timeout time.Duration) (net.Conn, error) {
	if open.GetHost() == "" || open.GetPort() == 0 || open.GetPort() > 65535 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "(forward target %q port %d)", open.GetHost(), open.GetPort())
	}
	if timeout <= 0 {
		timeout = fwdDefaultDialTimeout
	}
	addr := net.JoinHostPort(open.GetHost(), strconv.Itoa(int(open.GetPort())))
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	switch {
	case err == nil:
		return conn, nil
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return nil, catalog.Errorf(fwdUnreachable, "(the peer got no answer from %s within %s)", addr, timeout)
	default:
		return nil, catalog.Errorf(fwdUnreachable, "(the peer could not connect to %s: %w)", addr, err)
	}
}
