package relay_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/relay"
)

// router is a router's port forwarding in a test: it listens on
// 127.0.0.2 (the public address) and copies each connection to a port on
// 127.0.0.1 (the relay's own), set once the relay listens, counting the
// connections it forwarded.
type router struct {
	port      int          // the public port, on 127.0.0.2
	to        atomic.Int32 // the relay's port, on 127.0.0.1
	forwarded atomic.Int64
}

// portForward starts a router on 127.0.0.2 at port (0: the kernel's
// choice) until the test ends.
func portForward(t *testing.T, port int) *router {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("the router's public port on 127.0.0.2: %v", err)
	}
	rt := &router{port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rt.forwarded.Add(1)
			wg.Go(func() {
				defer c.Close()
				in, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(rt.to.Load()))))
				if err != nil {
					return
				}
				defer in.Close()
				// Each direction until its end, passed on as a half-close.
				var dirs sync.WaitGroup
				dirs.Go(func() {
					_, _ = io.Copy(in, c)
					_ = in.(*net.TCPConn).CloseWrite()
				})
				_, _ = io.Copy(c, in)
				_ = c.(*net.TCPConn).CloseWrite()
				dirs.Wait()
			})
		}
	})
	return rt
}

// TestSpliceAtTheAnnouncedAddress: a relay behind port forwarding
// (--announce with its public address, the splice port forwarded to the
// same number) gets its relayed forwards through the splice — peer and
// console dial the splice at the address they reached the relay at, the
// announced one, not at the relay's own listen address, which they cannot
// reach from outside. Here a router forwards 127.0.0.2 (public) to
// 127.0.0.1 (the relay's host) and counts what it forwarded.
func TestSpliceAtTheAnnouncedAddress(t *testing.T) {
	p2p := portForward(t, 0)
	site := coordinatortest.New(t, console.Login)
	con, peerHost := member(t, site, "laptop"), member(t, site, "db-01")
	cfg := relayConfig(t, site, "relay-nat")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Announce = []string{"/ip4/127.0.0.2/tcp/" + strconv.Itoa(p2p.port)}
	r := runRelay(t, cfg)
	if addrs := r.Addrs(); len(addrs) != 1 || !strings.HasPrefix(addrs[0].String(), cfg.Announce[0]+"/p2p/") {
		t.Fatalf("the relay hands out %v, want only the announced %s", addrs, cfg.Announce[0])
	}
	own, err := relay.ListenAddrs(r)[0].ValueForProtocol(ma.P_TCP)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(own)
	p2p.to.Store(int32(port))
	// The splice port forwarded to the same number, as docs/operations.md
	// says: the relay's splice listens on 127.0.0.1 only, so 127.0.0.2 at
	// that number is free.
	splice := portForward(t, relay.SplicePort(r))
	splice.to.Store(int32(relay.SplicePort(r)))

	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()
	serveForwards(t, ctx, peerHost)
	if err := reserve(ctx, peerHost, ri); err != nil {
		t.Fatal(err)
	}
	if err := dialCircuit(ctx, con, ri, peerHost.ID()); err != nil {
		t.Fatal(err)
	}
	forwardToSink(t, ctx, con, peerHost.ID(), sinkTarget(t), true, 1<<20)
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_splices_total"); n != 1 {
		t.Fatalf("splices_total %v, want 1: the forward did not go through the splice", n)
	}
	if n := splice.forwarded.Load(); n != 2 {
		t.Fatalf("the router forwarded %d connections to the splice port, want 2 (peer and console at the announced address)", n)
	}
}

// TestManySplicesAtOnce: a relay holds hundreds of slots and splices at
// once, each splice carrying its own bytes, within its bounds: a member's
// unpaired slots (16), its slots and splices (MaxCircuitsPerPeer, 40
// here) and the relay's (MaxCircuits, 240 here). Thirteen peers hold 16
// slots each, 208 at once, none paired (the 17th of one is refused
// member_busy); all 208 are then paired; one peer splices up to its bound
// of 40 (the 41st refused member_busy), another until the relay's 240
// (the next refused relay_busy); every splice then echoes its own bytes,
// all at once; once closed, the relay holds nothing and grants slots
// again.
func TestManySplicesAtOnce(t *testing.T) {
	const members, perMember, total = 13, 40, 240
	site := coordinatortest.New(t, console.Login)
	peers := make([]host.Host, members)
	for i := range peers {
		peers[i] = member(t, site, fmt.Sprintf("peer-%02d", i))
	}
	cfg := relayConfig(t, site, "relay-many")
	cfg.Resources = relay.Resources{MaxCircuits: total, MaxCircuitsPerPeer: perMember}
	r := runRelay(t, cfg)
	ctx := site.Ctx()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(relay.SplicePort(r)))
	type pair struct{ a, b net.Conn }
	var pairs []pair
	t.Cleanup(func() {
		for _, p := range pairs {
			p.a.Close()
			p.b.Close()
		}
	})
	pairUp := func(slot channel.SpliceSlot) {
		t.Helper()
		a, err := channel.DialSplice(ctx, addr, slot.Token, channel.SpliceOfferer, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		b, err := channel.DialSplice(ctx, addr, slot.Token, channel.SpliceDialer, 5*time.Second)
		if err != nil {
			a.Close()
			t.Fatal(err)
		}
		pairs = append(pairs, pair{a, b})
	}
	splice := func(h host.Host) error {
		slot, err := askSlot(t, ctx, h, r)
		if err == nil {
			pairUp(slot)
		}
		return err
	}
	refusals := func(reason string) float64 {
		return metric(t, r.HTTPAddr(), `jumpmesh_relay_splice_refusals_total{reason="`+reason+`"}`)
	}

	// 208 slots at once, none paired.
	var slots []channel.SpliceSlot
	for _, h := range peers {
		for range relay.SpliceSlotsPerMember {
			slot, err := askSlot(t, ctx, h, r)
			if err != nil {
				t.Fatalf("slot %d of %s: %v", len(slots), h.ID(), err)
			}
			slots = append(slots, slot)
		}
	}
	waitSpliceCounts(t, r, len(slots), 0, 0)
	if _, err := askSlot(t, ctx, peers[0], r); !errors.Is(err, channel.ErrSpliceRefused) {
		t.Fatalf("a 17th unpaired slot: %v, want a refusal", err)
	}
	for _, slot := range slots {
		pairUp(slot)
	}
	waitSpliceCounts(t, r, 0, 0, len(slots))

	// A member's bound, then the relay's.
	for len(pairs) < len(slots)+perMember-relay.SpliceSlotsPerMember {
		if err := splice(peers[0]); err != nil {
			t.Fatalf("splice %d of the first peer: %v", len(pairs), err)
		}
	}
	waitSpliceCounts(t, r, 0, 0, len(pairs))
	if err := splice(peers[0]); !errors.Is(err, channel.ErrSpliceRefused) {
		t.Fatalf("a splice over a member's bound: %v, want a refusal", err)
	}
	for len(pairs) < total {
		if err := splice(peers[1]); err != nil {
			t.Fatalf("splice %d: %v", len(pairs), err)
		}
	}
	waitSpliceCounts(t, r, 0, 0, total)
	if err := splice(peers[2]); !errors.Is(err, channel.ErrSpliceRefused) {
		t.Fatalf("a slot over the relay's bound: %v, want a refusal", err)
	}
	if got := refusals(relay.SpliceRefusedMemberBusy); got != 2 {
		t.Errorf("member_busy refusals %v, want 2", got)
	}
	if got := refusals(relay.SpliceRefusedRelayBusy); got != 1 {
		t.Errorf("relay_busy refusals %v, want 1", got)
	}

	// Every splice at once: each side writes its own line and reads the
	// other's.
	errs := make(chan error, 2*total)
	var wg sync.WaitGroup
	for i, p := range pairs {
		for k, c := range []net.Conn{p.a, p.b} {
			wg.Go(func() {
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				mine, theirs := fmt.Sprintf("splice %03d side %d\n", i, k), fmt.Sprintf("splice %03d side %d\n", i, 1-k)
				if _, err := io.WriteString(c, mine); err != nil {
					errs <- err
					return
				}
				got := make([]byte, len(theirs))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != theirs {
					errs <- fmt.Errorf("splice %d side %d read %q, want %q: %v", i, k, got, theirs, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := metric(t, r.HTTPAddr(), "jumpmesh_relay_splices_total"); n != total {
		t.Fatalf("splices_total %v, want %d", n, total)
	}
	for _, p := range pairs {
		p.a.Close()
		p.b.Close()
	}
	pairs = nil
	waitSpliceCounts(t, r, 0, 0, 0)
	if _, err := askSlot(t, ctx, peers[0], r); err != nil {
		t.Fatalf("a slot once the splices ended: %v", err)
	}
}
