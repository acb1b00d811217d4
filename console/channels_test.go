package console_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// Tests of the session channels: a real peer host that serves channels the
// way the daemon does after admitting a grant (Accept, Ready, serve), and a
// real console host on loopback TCP that drives them through the console
// API. Grants are the daemon's business and are not checked here.

// channelPair is a console host connected to a peer host serving channels.
type channelPair struct {
	console host.Host
	peerID  libp2ppeer.ID
	ctx     context.Context // the peer's: cancelled when the test ends

	mu        sync.Mutex
	closed    bool
	serving   sync.WaitGroup
	fileErrs  []error // what ServeFiles returned, in order
	exits     []*pb.ExitStatus
	forwarded []error
}

func newChannelPair(tb testing.TB) *channelPair {
	tb.Helper()
	ph, chost := newLoopbackHost(tb), newLoopbackHost(tb)
	ctx, cancel := context.WithCancel(context.Background())
	p := &channelPair{console: chost, peerID: ph.ID(), ctx: ctx}
	ph.SetStreamHandler(channel.Protocol, p.serve)
	tb.Cleanup(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		cancel()
		_ = chost.Close()
		_ = ph.Close()
		p.serving.Wait()
	})
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := chost.Connect(cctx, libp2ppeer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		tb.Fatalf("connecting the console to the peer: %v", err)
	}
	return p
}

func newLoopbackHost(tb testing.TB) host.Host {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// serve is the peer's stream handler: what the daemon does once a grant
// is admitted.
func (p *channelPair) serve(st network.Stream) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = st.Reset()
		return
	}
	p.serving.Add(1)
	p.mu.Unlock()
	defer p.serving.Done()

	ch, open, err := channel.Accept(st)
	if err != nil {
		return
	}
	defer ch.Close()
	if err := ch.Ready("s1", nil); err != nil {
		return
	}
	switch k := open.GetKind().(type) {
	case *pb.ChannelOpen_Exec:
		st := peer.ServeExec(p.ctx, ch, k.Exec, peer.ExecOptions{})
		p.record(func() { p.exits = append(p.exits, st) })
	case *pb.ChannelOpen_Forward:
		err := peer.ServeForward(p.ctx, ch, k.Forward, 2*time.Second)
		p.record(func() { p.forwarded = append(p.forwarded, err) })
	case *pb.ChannelOpen_File:
		err := peer.ServeFiles(p.ctx, ch, k.File)
		p.record(func() { p.fileErrs = append(p.fileErrs, err) })
	}
}

func (p *channelPair) record(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

// open opens a channel of one kind from the console.
func (p *channelPair) open(tb testing.TB, open *pb.ChannelOpen) *channel.Channel {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, sid, err := channel.Open(ctx, p.console, p.peerID, open)
	if err != nil {
		tb.Fatalf("opening a channel: %v", err)
	}
	if sid != "s1" {
		tb.Fatalf("session id %q, want s1", sid)
	}
	return ch
}

func execOpen(e *pb.ExecOpen) *pb.ChannelOpen {
	return &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: e}}
}

// syncBuffer is an output sink that tests can poll while Exec writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the output contains want.
func (b *syncBuffer) waitFor(tb testing.TB, want string) {
	tb.Helper()
	coordinatortest.Eventually(tb, 10*time.Second, fmt.Sprintf("output showing %q", want), func() bool {
		return strings.Contains(b.String(), want)
	})
}

// waitUntil polls cond with a deadline.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	coordinatortest.Eventually(tb, 10*time.Second, what, cond)
}
