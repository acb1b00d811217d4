package peer_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// forwardOnce carries one connection through a fresh Forwarder on ref
// (NoBulk as given) to to, and checks a line comes back.
func forwardOnce(t *testing.T, c *console.Client, ref string, to console.ForwardTarget, noBulk bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fw, err := console.NewForwarder(ctx, c, ref)
	if err != nil {
		t.Fatalf("forward %s: %v", ref, err)
	}
	defer fw.Close(ctx)
	fw.NoBulk = noBulk
	client, carried := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- fw.Carry(ctx, carried, to) }()
	if err := echo(client, "through the forward"); err != nil {
		t.Fatalf("echo: %v", err)
	}
	// echoTarget keeps its end open after the half-close: end the forward.
	_ = client.Close()
	cancel()
	<-done
}

// bulkCounts waits for the peer's counts of forwards that asked for a bulk
// connection and that it offered one to (the forward's end is reported
// after the console's).
func bulkCounts(t *testing.T, d *peer.Daemon, asked, offered int64, what string) {
	t.Helper()
	coordinatortest.Eventually(t, 10*time.Second, what, func() bool {
		a, o := peer.BulkForwards(d)
		return a == asked && o == offered
	})
}

// TestBulkConnectionsSetting: a peer offers a forward a bulk connection
// (on a listener of its own) while the site's bulk-connections setting is
// on, the default; with it off (an update to the peer online) the forward
// works on the channel and the peer made no offer and held no listener;
// --no-bulk (Forwarder.NoBulk) asks for none. On again, offers come back.
func TestBulkConnectionsSetting(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})
	to := echoTarget(t)
	if !peer.BulkOn(h.d) {
		t.Fatal("bulk connections off before the site said anything")
	}
	forwardOnce(t, site.Admin, "web-01", to, false)
	bulkCounts(t, h.d, 1, 1, "an offer with bulk-connections on (the default)")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := site.Admin.SetSettings(ctx, map[string]string{"bulk-connections": "false"}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "bulk off at the peer", func() bool { return !peer.BulkOn(h.d) })
	forwardOnce(t, site.Admin, "web-01", to, false)
	bulkCounts(t, h.d, 2, 1, "asked, and no offer with bulk-connections=false")

	if _, err := site.Admin.SetSettings(ctx, map[string]string{"bulk-connections": "true"}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "bulk on at the peer", func() bool { return peer.BulkOn(h.d) })
	forwardOnce(t, site.Admin, "web-01", to, true)
	bulkCounts(t, h.d, 2, 1, "--no-bulk asks for no bulk connection")
	forwardOnce(t, site.Admin, "web-01", to, false)
	bulkCounts(t, h.d, 3, 2, "an offer with bulk-connections on again")
}

// TestBulkConnectionsOffCannotBeAskedFor is the attack test of the
// setting: on a site that turned bulk connections off, a console that
// asks for one anyway (ForwardOpen.bulk on a direct TCP connection, its
// own open message) gets a status with no offer, the peer opens no
// listener, and the forward runs on the channel.
func TestBulkConnectionsOffCannotBeAskedFor(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	if _, err := site.Admin.SetSettings(context.Background(), map[string]string{"bulk-connections": "false"}); err != nil {
		t.Fatal(err)
	}
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})
	coordinatortest.Eventually(t, 10*time.Second, "bulk off at the peer", func() bool { return !peer.BulkOn(h.d) })
	to := echoTarget(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "web-01", grant.Forward)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := j.Open(ctx, &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: to.Host, Port: uint32(to.Port), Bulk: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	offer, addr, err := ch.ReadStatusOffer()
	if err != nil {
		t.Fatal(err)
	}
	if offer != nil {
		t.Fatalf("bulk-connections=false, yet the peer offered a bulk connection at %s", addr)
	}
	bulkCounts(t, h.d, 1, 0, "asked, and no offer")
	// No choice byte is expected: the forward's bytes are on the channel.
	if _, err := io.WriteString(ch, "on the channel\n"); err != nil {
		t.Fatal(err)
	}
	_ = ch.Stream().SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := bufio.NewReader(ch).ReadString('\n')
	if err != nil || got != "on the channel\n" {
		t.Fatalf("echo on the channel: %q, %v", got, err)
	}
}
