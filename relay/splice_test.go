package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/relay"
)

// spliceSite is a site with a relay and two members: alice (a console)
// and bob (a peer, which asks for slots).
type spliceSite struct {
	site       *coordinatortest.Site[*console.Client]
	r          *relay.Relay
	alice, bob host.Host
}

func newSpliceSite(t testing.TB, res relay.Resources) *spliceSite {
	t.Helper()
	site := coordinatortest.New(t, console.Login)
	// Members first: the relay's first ACL then has them (a member enrolled
	// later waits for a refresh, which a loaded machine may not give it
	// within the ACL's wait).
	s := &spliceSite{site: site, alice: member(t, site, "alice"), bob: member(t, site, "bob")}
	cfg := relayConfig(t, site, "relay-1")
	cfg.Resources = res
	s.r = runRelay(t, cfg)
	return s
}

// askSlot asks the relay for a splice slot as h.
func askSlot(t testing.TB, ctx context.Context, h host.Host, r *relay.Relay) (channel.SpliceSlot, error) {
	t.Helper()
	if err := h.Connect(ctx, relayInfo(t, r.Addrs())); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, r.ID(), channel.RelayBulkProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return channel.ReadSpliceSlot(s)
}

func (s *spliceSite) slot(t testing.TB) channel.SpliceSlot {
	t.Helper()
	slot, err := askSlot(t, s.site.Ctx(), s.bob, s.r)
	if err != nil {
		t.Fatalf("a member's slot: %v", err)
	}
	return slot
}

func (s *spliceSite) dial(t testing.TB, token [channel.SpliceSlotSize]byte, side byte) net.Conn {
	t.Helper()
	c, err := channel.DialSplice(s.site.Ctx(), net.JoinHostPort("127.0.0.1", strconv.Itoa(relay.SplicePort(s.r))), token, side, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByRelay waits until the relay closed c (a read ends without data).
func closedByRelay(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, errTimeout) || isTimeout(err) {
		t.Fatalf("%s: read %d bytes, %v; want the relay to close it", what, n, err)
	}
}

var errTimeout = errors.New("timeout")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitSpliceCounts waits for the relay's slots, waiting connections and
// running splices to be as given.
func waitSpliceCounts(t testing.TB, r *relay.Relay, slots, waiting, active int) {
	t.Helper()
	coordinatortest.Eventually(t, 10*time.Second, "the relay's splice counts", func() bool {
		s, w, a := relay.SpliceCounts(r)
		return s == slots && w == waiting && a == active
	})
}

// accepted is what the peer's side of a bulk connection got.
type accepted struct {
	bc  *channel.BulkConn
	err error
}

// offer is the peer's side of a bulk connection through the relay's
// splice on slot: a fresh offer, its connection to the splice listener
// and the accept of the console's hello on it, whose outcome comes on got.
func (s *spliceSite) offer(t *testing.T, slot channel.SpliceSlot) (o channel.BulkOffer, offers *channel.BulkOffers, got <-chan accepted) {
	t.Helper()
	o = channel.NewBulkOffer()
	offers = &channel.BulkOffers{}
	offers.Add(o, time.Minute)
	pc := s.dial(t, slot.Token, channel.SpliceOfferer)
	ch := make(chan accepted, 1)
	go func() {
		bc, err := channel.AcceptBulk(pc, offers)
		ch <- accepted{bc, err}
	}()
	return o, offers, ch
}

// bulkPair opens a bulk connection through the relay's splice on slot:
// the peer's side (AcceptBulk on its connection) and the console's.
func (s *spliceSite) bulkPair(t *testing.T, slot channel.SpliceSlot) (console, peer *channel.BulkConn) {
	t.Helper()
	o, _, got := s.offer(t, slot)
	cc := s.dial(t, slot.Token, channel.SpliceDialer)
	cb, err := channel.DialBulk(cc, o)
	if err != nil {
		t.Fatalf("the console's bulk connection through the splice: %v", err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("the peer's bulk connection through the splice: %v", a.err)
	}
	t.Cleanup(func() { cb.Close(); a.bc.Close() })
	return cb, a.bc
}

// TestSpliceCarriesABulkConnectionUnread: a bulk connection through the
// relay's splice carries a forward's bytes both ways, with half-close,
// and a tap on every byte the relay copies sees ciphertext only.
func TestSpliceCarriesABulkConnectionUnread(t *testing.T) {
	var tapMu sync.Mutex
	var tapped bytes.Buffer
	t.Cleanup(relay.SetSpliceTap(func(p []byte) { tapMu.Lock(); tapped.Write(p); tapMu.Unlock() }))
	s := newSpliceSite(t, relay.Resources{})
	cb, pb := s.bulkPair(t, s.slot(t))
	waitSpliceCounts(t, s.r, 0, 0, 1)

	secret := bytes.Repeat([]byte("technician types: sudo cat /etc/shadow; "), 8192) // 320 KiB
	answer := bytes.Repeat([]byte("root:$6$salt$hash:19000:0:99999:7:::\n"), 8192)
	go func() {
		_, _ = cb.Write(secret)
		_ = cb.CloseWrite()
	}()
	got, err := io.ReadAll(pb)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the peer read %d bytes, %v", len(got), err)
	}
	go func() {
		_, _ = pb.Write(answer)
		_ = pb.CloseWrite()
	}()
	if got, err = io.ReadAll(cb); err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("the console read %d bytes, %v", len(got), err)
	}
	_ = cb.Close()
	_ = pb.Close()
	waitSpliceCounts(t, s.r, 0, 0, 0)

	tapMu.Lock()
	seen := bytes.Clone(tapped.Bytes())
	tapMu.Unlock()
	if len(seen) < len(secret)+len(answer) {
		t.Fatalf("the tap saw %d bytes, want at least %d: it is not on the spliced path", len(seen), len(secret)+len(answer))
	}
	if bytes.Contains(seen, []byte("sudo cat")) || bytes.Contains(seen, []byte("root:$6$")) {
		t.Fatal("the relay read the forward's plain text")
	}
	if n := metric(t, s.r.HTTPAddr(), "jumpmesh_relay_splices_total"); n != 1 {
		t.Fatalf("splices_total %v, want 1", n)
	}
}

// TestSpliceStrangers: a stranger gets no slot, and connections to the
// splice port with random tokens, a partial token, garbage or nothing
// are closed and leave nothing behind: a member's slot opened before them
// still pairs, and afterwards the relay holds no slot and no connection.
func TestSpliceStrangers(t *testing.T) {
	t.Cleanup(relay.SetSpliceTimes(10*time.Second, 300*time.Millisecond))
	s := newSpliceSite(t, relay.Resources{})
	ctx := s.site.Ctx()
	if _, err := askSlot(t, ctx, stranger(t), s.r); !errors.Is(err, channel.ErrSpliceRefused) {
		t.Fatalf("a stranger's slot: %v, want a refusal", err)
	}
	slot := s.slot(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(relay.SplicePort(s.r)))
	knock := func(what string, b []byte, closeWrite bool) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if closeWrite {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		closedByRelay(t, c, what)
	}
	var random [channel.SpliceSlotSize]byte
	_, _ = rand.Read(random[:])
	knock("a random token", append(random[:], channel.SpliceDialer), false)
	knock("a random token, the offerer's side", append(random[:], channel.SpliceOfferer), false)
	knock("the slot's token with a side that is none", append(slot.Token[:], 'x'), false)
	knock("half the slot's token, then the end", slot.Token[:8], true)
	knock("half the slot's token, then silence", slot.Token[:8], false)
	knock("nothing", nil, false)
	knock("garbage", bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 64), false)
	waitSpliceCounts(t, s.r, 1, 0, 0)

	cb, pb := s.bulkPair(t, slot)
	go func() { _, _ = cb.Write([]byte("after the strangers")); _ = cb.CloseWrite() }()
	if got, err := io.ReadAll(pb); err != nil || string(got) != "after the strangers" {
		t.Fatalf("the member's slot after the strangers: %q, %v", got, err)
	}
	_ = cb.Close()
	_ = pb.Close()
	waitSpliceCounts(t, s.r, 0, 0, 0)
	for reason, want := range map[string]float64{relay.SpliceRefusedNotMember: 1, relay.SpliceRefusedNoSlot: 2, relay.SpliceRefusedBadHello: 5} {
		if got := metric(t, s.r.HTTPAddr(), `jumpmesh_relay_splice_refusals_total{reason="`+reason+`"}`); got != want {
			t.Errorf("refusals %s: %v, want %v", reason, got, want)
		}
	}
}

// TestSpliceSlotIsOneUseAndExpires: once a slot paired, its token opens
// nothing more (either side); a slot nobody used expires, and so does one
// whose second side never came, closing the first.
func TestSpliceSlotIsOneUseAndExpires(t *testing.T) {
	t.Cleanup(relay.SetSpliceTimes(500*time.Millisecond, time.Second))
	s := newSpliceSite(t, relay.Resources{})
	used := s.slot(t)
	s.bulkPair(t, used)
	closedByRelay(t, s.dial(t, used.Token, channel.SpliceDialer), "the used slot's token, the console's side")
	closedByRelay(t, s.dial(t, used.Token, channel.SpliceOfferer), "the used slot's token, the peer's side")

	unused := s.slot(t)
	half := s.slot(t)
	first := s.dial(t, half.Token, channel.SpliceOfferer)
	waitSpliceCounts(t, s.r, 2, 1, 1)
	closedByRelay(t, first, "the first side of a slot whose second never came")
	waitSpliceCounts(t, s.r, 0, 0, 1)
	closedByRelay(t, s.dial(t, unused.Token, channel.SpliceDialer), "an expired slot's token")
	closedByRelay(t, s.dial(t, half.Token, channel.SpliceDialer), "an expired half-used slot's token")
}

// TestSpliceRacerKeptOutByTheHello: a third party that saw the slot's
// token on the wire and reaches the relay before the console is paired
// with the peer, but cannot make the bulk hello (it has not the offer's
// secret, which went on the end-to-end channel): the peer refuses it and
// reads nothing from it, and the console, coming second, finds its slot
// used and falls back to the channel.
func TestSpliceRacerKeptOutByTheHello(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{})
	slot := s.slot(t)
	o, offers, got := s.offer(t, slot)
	// The racer even knows the ticket (the console's first bytes on a
	// direct bulk connection cross the wire in clear), not the secret.
	racer := s.dial(t, slot.Token, channel.SpliceDialer)
	forged := channel.BulkOffer{Ticket: o.Ticket}
	_, _ = rand.Read(forged.Secret[:])
	if _, err := channel.DialBulk(racer, forged); err == nil {
		t.Fatal("the racer opened a bulk connection")
	}
	if a := <-got; !errors.Is(a.err, channel.ErrBulkRefused) {
		t.Fatalf("the peer's accept of the racer: %v, want ErrBulkRefused", a.err)
	}
	if offers.Len() != 1 {
		t.Fatal("the racer took the peer's offer")
	}
	cc := s.dial(t, slot.Token, channel.SpliceDialer)
	if _, err := channel.DialBulk(cc, o); err == nil {
		t.Fatal("the console's bulk connection on a slot the racer used opened")
	}
	waitSpliceCounts(t, s.r, 0, 0, 0)
}

// TestSpliceMemberBound: a member gets its bound of slots and no more; the
// relay keeps serving other members.
func TestSpliceMemberBound(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{})
	ctx := s.site.Ctx()
	for range relay.SpliceSlotsPerMember {
		s.slot(t)
	}
	if _, err := askSlot(t, ctx, s.bob, s.r); !errors.Is(err, channel.ErrSpliceRefused) {
		t.Fatalf("a slot over the member's bound: %v, want a refusal", err)
	}
	if _, err := askSlot(t, ctx, s.alice, s.r); err != nil {
		t.Fatalf("another member's slot: %v", err)
	}
	if got := metric(t, s.r.HTTPAddr(), `jumpmesh_relay_splice_refusals_total{reason="`+relay.SpliceRefusedMemberBusy+`"}`); got != 1 {
		t.Fatalf("member_busy refusals %v, want 1", got)
	}
}

// TestSpliceDataLimit: a splice is held to the circuits' data limit: the
// side sending more is cut at the limit, and the other receives no more.
func TestSpliceDataLimit(t *testing.T) {
	const limit = 64 << 10
	s := newSpliceSite(t, relay.Resources{CircuitData: limit})
	slot := s.slot(t)
	pc := s.dial(t, slot.Token, channel.SpliceOfferer)
	cc := s.dial(t, slot.Token, channel.SpliceDialer)
	go func() { _, _ = cc.Write(make([]byte, 1<<20)) }()
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, pc)
	if n > limit || isTimeout(err) {
		t.Fatalf("received %d bytes (%v) through a splice limited to %d", n, err, limit)
	}
	waitSpliceCounts(t, s.r, 0, 0, 0)
	if got := metric(t, s.r.HTTPAddr(), `jumpmesh_relay_splice_cuts_total{limit="`+relay.SpliceCutData+`"}`); got != 1 {
		t.Fatalf("data cuts %v, want 1", got)
	}
}

// TestSpliceLyingRelay: a relay that pairs the console with the wrong
// peer side (another forward's slot) gets no bulk connection made: the
// other forward's peer has no offer with the console's ticket, so both
// hellos fail and the console sees an error (console.Forward then declines
// the offer and carries the forward on its channel, as when a bulk
// listener is unreachable: TestForwardFallsBackWhenTheBulkListenerIsUnreachable).
func TestSpliceLyingRelay(t *testing.T) {
	t.Cleanup(relay.SetSpliceMisPair(true))
	s := newSpliceSite(t, relay.Resources{})
	mine, other := s.slot(t), s.slot(t)
	_, _, got := s.offer(t, other)
	o1, _, _ := s.offer(t, mine)
	waitSpliceCounts(t, s.r, 2, 2, 0)
	cc := s.dial(t, mine.Token, channel.SpliceDialer)
	_, err := channel.DialBulk(cc, o1)
	if err == nil {
		t.Fatal("the console opened a bulk connection to another forward's peer")
	}
	t.Logf("the console's error: %v", err)
	if a := <-got; !errors.Is(a.err, channel.ErrBulkRefused) {
		t.Fatalf("the other peer's accept: %v, want ErrBulkRefused", a.err)
	}
}
