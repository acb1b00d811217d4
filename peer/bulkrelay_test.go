package peer_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
	"github.com/jumpmesh/jumpmesh/relay"
)

// Relayed bulk connections end to end: a real relay (its splice listener
// on loopback), a real peer daemon reserved on it and a console forwarding
// through a session that only goes through the relay.

// startSpliceRelay is startRelay with the metrics endpoint on and the
// splice listener at spliceAddr ("" the default, "off" none).
func startSpliceRelay(t *testing.T, site *coordinatortest.Site[*console.Client], spliceAddr string) *relay.Relay {
	t.Helper()
	inv, err := site.Admin.InviteUser(site.Ctx(), "relay-1", pb.Role_ROLE_RELAY, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(context.Background(), relay.Config{DataDir: filepath.Join(t.TempDir(), "relay-1"), Coordinator: site.Addr,
		Invite: inv.GetCode(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, HTTPAddr: "127.0.0.1:0", SpliceAddr: spliceAddr,
		Refresh: 200 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
	return r
}

// relayMetric reads one series from the relay's /metrics (0 if absent).
func relayMetric(t *testing.T, r *relay.Relay, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return v
		}
	}
	return 0
}

// halfCloseEcho echoes each connection until its half-close, then closes.
func halfCloseEcho(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// relayedForward jumps to ref through the relay only and carries one
// connection of n random bytes to an echo target on the peer's host,
// checking they all come back.
func relayedForward(t *testing.T, site *coordinatortest.Site[*console.Client], ref string, r *relay.Relay, n int) {
	t.Helper()
	target := halfCloseEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j := relayedJump(t, site, ref, r, grant.Forward)
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: "127.0.0.1", Port: uint32(target), Bulk: true}}}
	ch, err := j.Open(ctx, open)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	carried, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := console.Forward(ctx, ch, carried); done <- err }()
	msg := make([]byte, n)
	_, _ = rand.Read(msg)
	go func() { _, _ = client.Write(msg); _ = client.(*net.TCPConn).CloseWrite() }()
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the relayed forward: %d bytes of %d back, %v", len(got), n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("forward: %v", err)
	}
}

// TestRelayedForwardSplicedByTheRelay: a forward on a relayed session is
// carried on a bulk connection through the relay's splice: the peer
// offered it through the relay, the relay spliced one connection pair and
// copied the forward's bytes (sealed, with their frames) there, and the
// bytes came back whole.
func TestRelayedForwardSplicedByTheRelay(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r := startSpliceRelay(t, site, "")
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	waitReservation(t, h, r)
	const n = 4 << 20
	relayedForward(t, site, "behind-nat", r, n)
	if got := peer.RelayedBulkForwards(h.d); got != 1 {
		t.Fatalf("%d forwards offered through the relay's splice, want 1", got)
	}
	if got := relayMetric(t, r, "jumpmesh_relay_splices_total"); got != 1 {
		t.Fatalf("the relay spliced %v connection pairs, want 1", got)
	}
	if got := relayMetric(t, r, "jumpmesh_relay_spliced_bytes_total"); got < 2*n {
		t.Fatalf("the relay spliced %v bytes, want at least the forward's %d both ways", got, 2*n)
	}
}

// TestRelayedForwardFallsBackToTheChannel: a relay without the splice
// service (an older relay, or SpliceAddr off) gives no slot; the forward
// runs on its channel inside the circuit, as before relayed bulk
// connections.
func TestRelayedForwardFallsBackToTheChannel(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r := startSpliceRelay(t, site, "off")
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	waitReservation(t, h, r)
	relayedForward(t, site, "behind-nat", r, 1<<20)
	if got := peer.RelayedBulkForwards(h.d); got != 0 {
		t.Fatalf("%d forwards offered through the relay's splice, want 0", got)
	}
	if a, _ := peer.BulkForwards(h.d); a != 1 {
		t.Fatalf("%d forwards asked for a bulk connection, want 1", a)
	}
}
