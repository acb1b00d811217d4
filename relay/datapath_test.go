package relay_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/relay"
)

// TestRelayCannotReadSessions: what a relay carries between two members is
// the session's own end-to-end encryption. A tap on every stream the
// relay's circuit service reads (after the hop's TLS, so everything the
// relay process could read) sees the session's bytes go by, and never its
// plain text.
func TestRelayCannotReadSessions(t *testing.T) {
	tap := &streamTap{}
	t.Cleanup(relay.SetServiceHost(func(h host.Host) host.Host { return tapHost{Host: h, tap: tap} }))
	site := coordinatortest.New(t, console.Login)
	alice, bob := member(t, site, "alice"), member(t, site, "bob")
	r := runRelay(t, relayConfig(t, site, "relay-1"))
	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()
	if err := reserve(ctx, bob, ri); err != nil {
		t.Fatal(err)
	}
	if err := dialCircuit(ctx, alice, ri, bob.ID()); err != nil {
		t.Fatal(err)
	}
	s, err := alice.NewStream(ctx, bob.ID(), echoProto)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Conn().RemoteMultiaddr().String(), "/p2p-circuit") {
		t.Fatalf("connection is not relayed: %s", s.Conn().RemoteMultiaddr())
	}
	secret := bytes.Repeat([]byte("technician types: sudo cat /etc/shadow; "), 4096) // 160 KiB
	go func() {
		_, _ = s.Write(secret)
		_ = s.CloseWrite()
	}()
	echoed, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(echoed, secret) {
		t.Fatalf("echo through the relay: %d bytes, %v", len(echoed), err)
	}

	seen := tap.bytes()
	if len(seen) < 2*len(secret) {
		t.Fatalf("the tap saw %d bytes, want at least both directions' %d: it is not on the relayed path", len(seen), 2*len(secret))
	}
	if bytes.Contains(seen, []byte("sudo cat")) {
		t.Fatal("the relay read the session's plain text")
	}
}

// streamTap keeps what the relay service read from its streams.
type streamTap struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *streamTap) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf.Bytes())
}

// tapHost is the relay's host with every stream the service accepts or
// opens tapped.
type tapHost struct {
	host.Host
	tap *streamTap
}

func (h tapHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(tappedStream{Stream: s, tap: h.tap}) })
}

func (h tapHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return tappedStream{Stream: s, tap: h.tap}, nil
}

type tappedStream struct {
	network.Stream
	tap *streamTap
}

func (s tappedStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	s.tap.mu.Lock()
	s.tap.buf.Write(b[:n])
	s.tap.mu.Unlock()
	return n, err
}

// TestCircuitDataLimit: a member that sends more than Resources.CircuitData
// through one relayed connection is cut off at the limit: the relay ends the
// circuit, and the destination receives no more than the limit.
func TestCircuitDataLimit(t *testing.T) {
	const limit = 64 << 10
	site := coordinatortest.New(t, console.Login)
	alice, bob := member(t, site, "alice"), member(t, site, "bob")
	cfg := relayConfig(t, site, "relay-1")
	cfg.Resources.CircuitData = limit
	r := runRelay(t, cfg)
	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()

	const countProto protocol.ID = "/jumpmesh-test/count"
	var got atomic.Int64
	bob.SetStreamHandler(countProto, func(s network.Stream) {
		defer s.Reset()
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	if err := reserve(ctx, bob, ri); err != nil {
		t.Fatal(err)
	}
	if err := dialCircuit(ctx, alice, ri, bob.ID()); err != nil {
		t.Fatal(err)
	}
	// With a data cap the relayed connection is limited: streams on it
	// must say they accept that.
	s, err := alice.NewStream(network.WithAllowLimitedConn(ctx, "test"), bob.ID(), countProto)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Conn().Stat().Limited {
		t.Fatalf("relayed connection with a data cap is not limited: %+v", s.Conn().Stat())
	}
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_circuits"); n != 1 {
		t.Fatalf("circuits gauge %v, want 1", n)
	}
	defer s.Reset()
	go func() {
		// Blocks once the relay stops reading; the Reset above ends it.
		_, _ = s.Write(make([]byte, 1<<20))
	}()
	coordinatortest.Eventually(t, 30*time.Second, "the relay ending the circuit at its data cap", func() bool {
		return metric(t, r.HTTPAddr(), "jumpmesh_relay_circuits") == 0
	})
	if n := got.Load(); n > limit {
		t.Fatalf("bob received %d bytes through a circuit capped at %d", n, limit)
	}
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_relayed_bytes_total"); n > 2*limit {
		t.Fatalf("the relay relayed %v bytes on a circuit capped at %d each way", n, limit)
	}
}
