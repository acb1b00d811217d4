package channel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The channel's own tests: framing and handshake between two real hosts.
// Exec, forward and copy end to end are tested in the console package,
// which can import both sides.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newHost(tb testing.TB) host.Host {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// pairWith starts a peer host whose channels are served by serve (after
// Accept) and a console host connected to it.
func pairWith(tb testing.TB, serve func(*Channel, *pb.ChannelOpen)) (console host.Host, peerID peer.ID) {
	tb.Helper()
	ph, ch := newHost(tb), newHost(tb)
	ph.SetStreamHandler(Protocol, func(st network.Stream) {
		c, open, err := Accept(st)
		if err != nil {
			return
		}
		defer c.Close()
		serve(c, open)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ch.Connect(ctx, peer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		tb.Fatal(err)
	}
	return ch, ph.ID()
}

func openCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// A message and raw bytes written together: the reader gets the message
// and then every raw byte, none swallowed by buffering.
func TestRawBytesAfterAMessageAreNotSwallowed(t *testing.T) {
	got := make(chan []byte, 1)
	console, pid := pairWith(t, func(c *Channel, _ *pb.ChannelOpen) {
		_ = c.Ready("s", nil)
		var m pb.ChannelReady
		if err := c.ReadMsg(&m); err != nil || m.GetSessionId() != "inner" {
			t.Errorf("ReadMsg: %v %v", &m, err)
		}
		raw, _ := io.ReadAll(c)
		got <- raw
	})
	c, sid, err := Open(openCtx(t), console, pid, &pb.ChannelOpen{})
	if err != nil || sid != "s" {
		t.Fatalf("Open: %q %v", sid, err)
	}
	defer c.Close()
	msg := binary.AppendUvarint(nil, 7)
	msg = append(msg, 0x12, 5, 'i', 'n', 'n', 'e', 'r') // ChannelReady{session_id: "inner"}
	raw := bytes.Repeat([]byte("raw!"), 50_000)
	if _, err := c.Write(append(msg, raw...)); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	if r := <-got; !bytes.Equal(r, raw) {
		t.Errorf("raw bytes: got %d, want %d", len(r), len(raw))
	}
	// Open wrote an empty ChannelOpen: one length byte.
	if want := uint64(1 + len(msg) + len(raw)); c.BytesWritten() != want {
		t.Errorf("BytesWritten %d, want %d", c.BytesWritten(), want)
	}
}

func TestOpenReturnsTheRefusal(t *testing.T) {
	console, pid := pairWith(t, func(c *Channel, _ *pb.ChannelOpen) {
		_ = c.Ready("", catalog.Errorf(catalog.CodePeerDisabled, "(by the host's user)"))
	})
	_, _, err := Open(openCtx(t), console, pid, &pb.ChannelOpen{})
	var me *catalog.Error
	if !errors.As(err, &me) || me.Code != catalog.CodePeerDisabled || me.Detail != "(by the host's user)" {
		t.Errorf("Open: %v, want peer_disabled with its detail", err)
	}
}

func TestOpenWithoutTheProtocolIsAnotherVersion(t *testing.T) {
	ph, ch := newHost(t), newHost(t)
	if err := ch.Connect(openCtx(t), peer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		t.Fatal(err)
	}
	_, _, err := Open(openCtx(t), ch, ph.ID(), &pb.ChannelOpen{})
	if catalog.CodeOf(err) != catalog.CodePeerOtherVersion {
		t.Errorf("Open: %v, want peer_other_version", err)
	}
}

func TestOpenTimesOutWithoutReady(t *testing.T) {
	release := make(chan struct{})
	console, pid := pairWith(t, func(*Channel, *pb.ChannelOpen) { <-release })
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := Open(ctx, console, pid, &pb.ChannelOpen{})
	if catalog.CodeOf(err) != catalog.CodeConnectTimeout {
		t.Errorf("Open: %v, want connect_timeout", err)
	}
}

func TestReadMsgRefusesOversizedMessages(t *testing.T) {
	errc := make(chan error, 1)
	console, pid := pairWith(t, func(c *Channel, _ *pb.ChannelOpen) {
		_ = c.Ready("s", nil)
		var m pb.FileMsg
		errc <- c.ReadMsg(&m)
	})
	c, _, err := Open(openCtx(t), console, pid, &pb.ChannelOpen{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(binary.AppendUvarint(nil, MaxMessage+1))
	if err := <-errc; catalog.CodeOf(err) != catalog.CodeProtocol {
		t.Errorf("ReadMsg: %v, want protocol_error", err)
	}
}

func TestCheckEntryPath(t *testing.T) {
	for _, ok := range []string{"a", "a/b", "a/b c/d.txt", "...", "a/..b", "ä/ö"} {
		if err := checkEntryPath(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/", "/a", "..", "a/..", "../a", "a/../b", ".", "a/.", "a//b", "a/", "a\\b", "a\x00b"} {
		if err := checkEntryPath(bad); catalog.CodeOf(err) != catalog.CodeCopyBadPath {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzCheckEntryPath: whatever a sender puts in a path, an accepted one
// stays inside the directory it is joined to.
func FuzzCheckEntryPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/../../b", "/etc/passwd", "a//b", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkEntryPath(p) != nil {
			return
		}
		joined := filepath.Join("/target", p)
		if !strings.HasPrefix(joined, "/target/") {
			t.Errorf("%q accepted but lands at %s", p, joined)
		}
	})
}
