package wake_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// newHost is a libp2p host on loopback with key (nil: a new one).
func newHost(t *testing.T, key crypto.PrivKey) host.Host {
	t.Helper()
	if key == nil {
		var err error
		if key, _, err = crypto.GenerateEd25519Key(nil); err != nil {
			t.Fatal(err)
		}
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// records keeps what a logger wrote.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }
func (r *records) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// wakerFixture: a site host (the coordinator), a waker host serving the
// protocol, and a passive listener on loopback for the waker to forward to.
type wakerFixture struct {
	site    *mesh.KeySigner
	siteH   host.Host
	wakerH  host.Host
	log     *records
	passive *passiveFixture
}

func newWakerFixture(t *testing.T, toward func(*pb.WakeBody) (*net.Interface, error)) *wakerFixture {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	site, _ := mesh.NewKeySigner(key)
	f := &wakerFixture{site: site, siteH: newHost(t, key), wakerH: newHost(t, nil), log: &records{}}
	f.passive = newPassive(t, func(c *wake.PassiveConfig) { c.Site = site.PeerID() })
	f.passive.site = site
	w := wake.NewWaker(wake.WakerConfig{Site: site.PeerID(), Log: slog.New(f.log), Toward: toward})
	f.wakerH.SetStreamHandler(wake.Protocol, w.Handle)
	f.siteH.Peerstore().AddAddrs(f.wakerH.ID(), f.wakerH.Addrs(), time.Hour)
	return f
}

func (f *wakerFixture) order(t *testing.T, cmd *pb.WakeCommand) (*pb.WakeReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return wake.Order(ctx, f.siteH, f.wakerH.ID(), cmd)
}

// TestOrderForwardsToAPassivePeer: the site orders a waker to forward a
// passive peer's command; the waker sends it over UDP and TCP, reports
// both, and the passive listener wakes once.
func TestOrderForwardsToAPassivePeer(t *testing.T) {
	key, _, _ := crypto.GenerateEd25519Key(nil)
	site, _ := mesh.NewKeySigner(key)
	siteH, wakerH := newHost(t, key), newHost(t, nil)
	target := newID(t)
	p, err := wake.ListenPassive(wake.PassiveConfig{Port: -1, Addr: "127.0.0.1", Site: site.PeerID(), Self: target})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w := wake.NewWaker(wake.WakerConfig{Site: site.PeerID()})
	wakerH.SetStreamHandler(wake.Protocol, w.Handle)
	siteH.Peerstore().AddAddrs(wakerH.ID(), wakerH.Addrs(), time.Hour)

	_, ua := p.Addr()
	b := body(target, time.Now())
	b.Macs = nil
	b.PassiveAddrs = []string{ua.String(), "not-an-address", "127.0.0.1:0"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := wake.Order(ctx, siteH, wakerH.ID(), sign(t, site, b))
	if err != nil {
		t.Fatalf("Order: %v", err)
	}
	want := []string{ua.String() + " udp", ua.String() + " tcp"}
	if strings.Join(rep.GetSent(), "|") != strings.Join(want, "|") || rep.GetError() != nil {
		t.Fatalf("report %v, want sent %v", rep, want)
	}
	select {
	case got := <-p.Woken():
		if peer.ID(got.GetTargetId()) != target {
			t.Fatalf("woken for %s", peer.ID(got.GetTargetId()))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the passive peer was not woken")
	}
	eventually(t, "both copies counted", func() bool { s := p.Stats(); return s.Accepted+s.Duplicate == 2 })
	if s := p.Stats(); s.Accepted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestOrderWithoutInterface: a Wake-on-LAN order whose interface cannot be
// found is reported as wake_failed, with the reason.
func TestOrderWithoutInterface(t *testing.T) {
	f := newWakerFixture(t, func(*pb.WakeBody) (*net.Interface, error) {
		return nil, errors.New("no interface toward 10.0.0.1")
	})
	rep, err := f.order(t, sign(t, f.site, body(newID(t), time.Now())))
	if catalog.CodeOf(err) != catalog.CodeWakeFailed || rep == nil || len(rep.GetSent()) != 0 {
		t.Fatalf("Order = %v, %v", rep, err)
	}
	if !strings.Contains(rep.GetError().GetDetail(), "no interface toward 10.0.0.1") {
		t.Fatalf("detail %q", rep.GetError().GetDetail())
	}
	// Nothing to send at all.
	b := body(newID(t), time.Now())
	b.Macs = nil
	if _, err := f.order(t, sign(t, f.site, b)); catalog.CodeOf(err) != catalog.CodeWakeFailed {
		t.Fatalf("empty order: %v", err)
	}
}

// TestWakerRefusesCommandsTheSiteDidNotSign: the site's own stream carries
// a command signed by another site, or an expired one, or a forged one:
// the waker sends nothing and reports the refusal.
func TestWakerRefusesCommandsTheSiteDidNotSign(t *testing.T) {
	f := newWakerFixture(t, nil)
	other := newSigner(t)
	target := newID(t)
	passiveBody := func(now time.Time) *pb.WakeBody {
		b := body(target, now)
		b.Macs = nil
		b.PassiveAddrs = []string{f.passive.udp}
		return b
	}
	forged := sign(t, f.site, passiveBody(time.Now()))
	forged.Signature[0] ^= 1
	for name, c := range map[string]struct {
		cmd  *pb.WakeCommand
		want string
	}{
		"another site": {sign(t, other, passiveBody(time.Now())), "another site"},
		"expired":      {sign(t, f.site, passiveBody(time.Now().Add(-time.Minute))), "expired"},
		"forged":       {forged, "bad signature"},
		"no command":   {nil, "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			rep, err := f.order(t, c.cmd)
			if catalog.CodeOf(err) != catalog.CodeWakeFailed || rep == nil || len(rep.GetSent()) != 0 {
				t.Fatalf("Order = %v, %v", rep, err)
			}
			if d := rep.GetError().GetDetail(); !strings.Contains(d, "refused") || !strings.Contains(d, c.want) {
				t.Fatalf("detail %q, want %q", d, c.want)
			}
		})
	}
	if s := f.passive.p.Stats(); f.passive.total() != 0 {
		t.Fatalf("the waker forwarded a refused command: %+v", s)
	}
}

// TestWakerResetsStrangers: a stream from anyone but the site (a peer, a
// technician who captured a valid command) is reset before it is read, and
// nothing is sent.
func TestWakerResetsStrangers(t *testing.T) {
	f := newWakerFixture(t, nil)
	stranger := newHost(t, nil)
	stranger.Peerstore().AddAddrs(f.wakerH.ID(), f.wakerH.Addrs(), time.Hour)
	b := body(newID(t), time.Now())
	b.Macs = nil
	b.PassiveAddrs = []string{f.passive.udp}
	cmd := sign(t, f.site, b) // a real order of the site, replayed by a stranger

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := wake.Order(ctx, stranger, f.wakerH.ID(), cmd)
	if err == nil || rep != nil {
		t.Fatalf("a stranger's order: %v, %v", rep, err)
	}
	// By hand, to see the reset.
	s, err := stranger.NewStream(ctx, f.wakerH.ID(), wake.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	ms := frame.NewStream(s, 1<<10)
	_ = ms.Write(&pb.WakeOrder{Command: cmd}, 10*time.Second)
	var got pb.WakeReport
	if err := ms.Read(&got, 20*time.Second); !errors.Is(err, network.ErrReset) {
		t.Fatalf("stranger's stream: %v, want a reset", err)
	}
	if msgs := f.log.all(); len(msgs) != 0 {
		t.Fatalf("the waker read a stranger's stream: %q", msgs)
	}
	if f.passive.total() != 0 {
		t.Fatalf("the waker forwarded a stranger's order: %+v", f.passive.p.Stats())
	}
	// The site's own order still goes through.
	rep, err = f.order(t, cmd)
	if err != nil || len(rep.GetSent()) != 2 {
		t.Fatalf("the site's order: %v, %v", rep, err)
	}
}

// TestWakerWithoutSiteServesNobody: a Waker configured without a site (a
// peer not yet enrolled) resets every stream.
func TestWakerWithoutSiteServesNobody(t *testing.T) {
	siteH, wakerH := newHost(t, nil), newHost(t, nil)
	wakerH.SetStreamHandler(wake.Protocol, wake.NewWaker(wake.WakerConfig{}).Handle)
	siteH.Peerstore().AddAddrs(wakerH.ID(), wakerH.Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if rep, err := wake.Order(ctx, siteH, wakerH.ID(), &pb.WakeCommand{}); err == nil {
		t.Fatalf("served: %v", rep)
	}
}

// TestOrderToANonWaker: a peer that does not serve the protocol is an
// error, not a report.
func TestOrderToANonWaker(t *testing.T) {
	siteH, other := newHost(t, nil), newHost(t, nil)
	siteH.Peerstore().AddAddrs(other.ID(), other.Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if rep, err := wake.Order(ctx, siteH, other.ID(), &pb.WakeCommand{}); err == nil || rep != nil {
		t.Fatalf("Order = %v, %v", rep, err)
	}
}
