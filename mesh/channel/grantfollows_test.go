package channel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Issue 17: a channel opened before its grant (ProtocolGrantFollows). The
// peer's checks of the grant are its own (peer package tests); here, what
// the handshake lets through before them.

// grantPair is a console host connected to a peer host that serves both
// protocols and reports what Accept returned.
type grantPair struct {
	console host.Host
	peer    peer.ID
	accepts chan grantAccept
}

type grantAccept struct {
	open *pb.ChannelOpen
	err  error
}

func newGrantPair(tb testing.TB, protocols ...protocol.ID) *grantPair {
	tb.Helper()
	ph, ch := newHost(tb), newHost(tb)
	p := &grantPair{console: ch, peer: ph.ID(), accepts: make(chan grantAccept, 8)}
	for _, pid := range protocols {
		ph.SetStreamHandler(pid, func(st network.Stream) {
			c, open, err := Accept(st)
			p.accepts <- grantAccept{open, err}
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.Ready("s-1", nil)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ch.Connect(ctx, peer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (p *grantPair) accepted(tb testing.TB) grantAccept {
	tb.Helper()
	select {
	case r := <-p.accepts:
		return r
	case <-time.After(20 * time.Second):
		tb.Fatal("the peer's Accept did not return")
	}
	return grantAccept{}
}

func testGrant() *pb.JumpGrant { return &pb.JumpGrant{Body: []byte("body"), Signature: []byte("sig")} }

func TestGrantFollowsTheOpen(t *testing.T) {
	p := newGrantPair(t, Protocol, ProtocolGrantFollows)
	ctx := openCtx(t)
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{Argv: []string{"true"}}}}
	pd, err := OpenPending(ctx, p.console, p.peer, open)
	if err != nil {
		t.Fatal(err)
	}
	// The peer is waiting for the grant: Accept has not returned.
	select {
	case r := <-p.accepts:
		t.Fatalf("Accept returned before the grant: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	ch, id, err := pd.Grant(ctx, testGrant())
	if err != nil || id != "s-1" {
		t.Fatalf("grant: %q %v", id, err)
	}
	ch.Close()
	r := p.accepted(t)
	want := proto.CloneOf(open)
	want.Grant = testGrant()
	if r.err != nil || !proto.Equal(r.open, want) {
		t.Fatalf("the peer got %v, %v; want %v", r.open, r.err, want)
	}
}

// A channel whose grant never comes: the peer gives up after grantWait,
// resets the stream and its Accept returns (its handler, its goroutine and
// its stream freed), having admitted nothing.
func TestGrantThatNeverComesIsBounded(t *testing.T) {
	grantWait = 300 * time.Millisecond
	defer func() { grantWait = GrantWait }()
	p := newGrantPair(t, ProtocolGrantFollows)
	ctx := openCtx(t)
	pd, err := OpenPending(ctx, p.console, p.peer, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := p.accepted(t); r.err == nil {
		t.Fatalf("Accept without a grant: %v", r.open)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the peer waited %s for the grant", took)
	}
	// The console learns the channel is gone: a grant sent now is not sent
	// or not answered, and never accepted.
	if _, _, err := pd.Grant(ctx, testGrant()); err == nil {
		t.Fatal("a grant after the peer gave up was answered")
	}
}

// The peer's Accept refuses the mixtures: a grant to follow on the old
// protocol (whose handler reads one message before Ready), and an open
// that carries a grant and says another follows.
func TestGrantFollowsOnlyOnItsProtocolAndAlone(t *testing.T) {
	p := newGrantPair(t, Protocol, ProtocolGrantFollows)
	ctx := openCtx(t)
	send := func(pid protocol.ID, open *pb.ChannelOpen) error {
		st, err := p.console.NewStream(ctx, p.peer, pid)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Reset()
		c := newChannel(st)
		if err := c.WriteMsg(open); err != nil {
			t.Fatal(err)
		}
		_ = c.WriteMsg(&pb.ChannelGrant{Grant: testGrant()})
		return p.accepted(t).err
	}
	exec := &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{}}
	if err := send(Protocol, &pb.ChannelOpen{Kind: exec, GrantFollows: true}); catalog.CodeOf(errors.Unwrap(err)) != catalog.CodeProtocol {
		t.Fatalf("grant to follow on %s: %v", Protocol, err)
	}
	if err := send(ProtocolGrantFollows, &pb.ChannelOpen{Kind: exec, GrantFollows: true, Grant: testGrant()}); catalog.CodeOf(errors.Unwrap(err)) != catalog.CodeProtocol {
		t.Fatalf("two grants: %v", err)
	}
	// The old order still works on the new protocol.
	if err := send(ProtocolGrantFollows, &pb.ChannelOpen{Kind: exec, Grant: testGrant()}); err != nil {
		t.Fatalf("grant in the open on %s: %v", ProtocolGrantFollows, err)
	}
}

// A peer of an earlier version (Protocol only): OpenPending says so at
// once, without a stream, and the console opens with the grant (Open).
func TestOpenPendingToAnEarlierPeer(t *testing.T) {
	p := newGrantPair(t, Protocol)
	ctx := openCtx(t)
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{}}}
	if _, err := OpenPending(ctx, p.console, p.peer, open); !errors.Is(err, ErrGrantFirst) {
		t.Fatalf("OpenPending to a peer without %s: %v", ProtocolGrantFollows, err)
	}
	open.Grant = testGrant()
	ch, _, err := Open(ctx, p.console, p.peer, open)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	if r := p.accepted(t); r.err != nil || !proto.Equal(r.open.GetGrant(), testGrant()) {
		t.Fatalf("the peer got %v, %v", r.open, r.err)
	}
}
