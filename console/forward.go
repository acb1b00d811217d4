package console

import (
	"context"
	"net"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
)

// Forward carries one local TCP connection over the forward channel ch
// (opened with a ForwardOpen). It first waits for the peer's dial status:
// a target the peer cannot reach comes back as the peer's catalog error
// before any byte of conn is read. Then bytes flow both ways, with
// half-close, until both directions end (see channel.Splice). in counts
// bytes from the peer to conn, out bytes from conn to the peer. Forward
// closes conn and ch.
func Forward(ctx context.Context, ch *channel.Channel, conn net.Conn) (in, out int64, err error) {
	stop := context.AfterFunc(ctx, func() { _ = ch.Reset() })
	err = ch.ReadStatus()
	if !stop() && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		_ = ch.Close()
		return 0, 0, err
	}
	return ch.Splice(ctx, conn)
}
