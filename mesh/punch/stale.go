package punch

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	mss "github.com/multiformats/go-multistream"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// A direct QUIC connection outlives a remote that vanished without
// closing it until QUIC's idle timeout (30 s): a console killed, or one
// whose CONNECTION_CLOSE went through a port-mapping probe's proxy that
// its process closed first. A new relayed connection from that remote
// (the technician's next command, same key) would then find a "direct"
// connection and never punch — in the lab's grid a hard console's next
// run stayed relayed 2 times in 5. So when a relayed connection comes
// while a direct one exists, the puncher pings the direct one and closes
// it when it does not answer within staleCheck.
const staleCheck = 2 * time.Second

// dropStaleDirect closes remote's direct connections that do not answer
// a ping within staleCheck.
func (p *Puncher) dropStaleDirect(remote peer.ID) {
	for _, c := range p.h.Network().ConnsToPeer(remote) {
		if mesh.IsCircuit(c.RemoteMultiaddr()) || c.IsClosed() {
			continue
		}
		ctx, cancel := context.WithTimeout(p.ctx, staleCheck)
		err := pingOn(ctx, c)
		cancel()
		if err != nil && p.ctx.Err() == nil {
			p.log.Info("closing a direct connection that does not answer", "peer", remote, "addr", c.RemoteMultiaddr(), "error", err)
			_ = c.Close()
		}
	}
}

// pingOn makes one libp2p ping round trip on c.
func pingOn(ctx context.Context, c network.Conn) error {
	s, err := c.NewStream(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	}
	if err := mss.SelectProtoOrFail(protocol.ID(ping.ID), s); err != nil {
		s.Reset()
		return err
	}
	out, in := make([]byte, ping.PingSize), make([]byte, ping.PingSize)
	_, _ = rand.Read(out)
	if _, err := s.Write(out); err != nil {
		s.Reset()
		return err
	}
	if _, err := io.ReadFull(s, in); err != nil {
		s.Reset()
		return err
	}
	if !bytes.Equal(in, out) {
		s.Reset()
		return io.ErrUnexpectedEOF
	}
	return nil
}
