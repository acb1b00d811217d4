package peer_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
	"github.com/jumpmesh/jumpmesh/peer"
)

// passiveIdle is the site's passive-idle-seconds in these tests.
const passiveIdle = 10 * time.Second

// passiveSite is a site whose passive peers go passive after passiveIdle.
func passiveSite(t *testing.T) *coordinatortest.Site[*console.Client] {
	t.Helper()
	site := coordinatortest.New(t, console.Login)
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"passive-idle-seconds": strconv.Itoa(int(passiveIdle / time.Second))}); err != nil {
		t.Fatalf("settings: %v", err)
	}
	return site
}

// passivePeer installs a peer with connection type passive and runs it with
// its passive listener on 127.0.0.1:port (a free port: the site's 5832 is
// shared by every test); it waits until the peer is online.
func passivePeer(t *testing.T, site *coordinatortest.Site[*console.Client], name string) (*host, int) {
	t.Helper()
	key := site.Installer(&pb.InstallerDefaults{Name: name, ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE}, 0, week()).GetKey()
	h := install(t, site, key, peer.InstallOptions{})
	port := coordinatortest.FreePort(t, "tcp")
	h.startWith(func(c *peer.RunConfig) { c.PassiveAddr, c.PassivePort = "127.0.0.1", port })
	h.waitStatus(h.id(), "online")
	h.waitWelcomed()
	return h, port
}

// waitWelcomed waits until the peer applied its welcome (the coordinator
// shows it online a moment before).
func (h *host) waitWelcomed() {
	h.t.Helper()
	coordinatortest.Eventually(h.t, 20*time.Second, "the welcome applied", func() bool {
		return h.state().ConnectionType != ""
	})
}

// startWith is start with changes to the daemon's RunConfig.
func (h *host) startWith(change func(*peer.RunConfig)) {
	h.t.Helper()
	cfg := peer.RunConfig{Dir: h.dir, Version: "test", Clock: h.site.Clock, Backoff: fastBackoff}
	if os.Getenv("JM_TEST_LOG") != "" { // debugging aid: the daemon's log on stderr
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	change(&cfg)
	d, err := peer.Open(cfg)
	if err != nil {
		h.t.Fatalf("open peer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.d, h.cancel, h.done = d, cancel, make(chan error, 1)
	go func() { h.done <- d.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// state is the peer's state.json.
func (h *host) state() *peer.State {
	h.t.Helper()
	s, err := peer.LoadState(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// waitPassive moves the site's clock while the peer waits on it, until the
// peer says it went passive. Past three idle times it moves the clock only
// now and then: the peer is then busy going passive, and a clock run far
// ahead would expire the commands a test holds.
func (h *host) waitPassive() {
	h.t.Helper()
	var advanced time.Duration
	polls := 0
	coordinatortest.Eventually(h.t, 60*time.Second, "the peer to go passive", func() bool {
		if h.state().Listening {
			return true
		}
		polls++
		if h.site.Clock.Waiting() > 0 && (advanced < 3*passiveIdle || polls%50 == 0) {
			h.site.Clock.Advance(2 * time.Second)
			advanced += 2 * time.Second
		}
		return false
	})
}

// waitCounters waits until the peer's state shows the listener's counters
// satisfying cond (they reach state.json within a few seconds).
func (h *host) waitCounters(what string, cond func(*peer.PassiveCounters) bool) {
	h.t.Helper()
	coordinatortest.Eventually(h.t, 30*time.Second, what, func() bool {
		c := h.state().PassiveCounters
		return c != nil && cond(c)
	})
}

// siteSigner signs as the site (its key file).
func siteSigner(t *testing.T, site *coordinatortest.Site[*console.Client]) mesh.Signer {
	t.Helper()
	key, err := mesh.LoadKeyFile(filepath.Join(site.DataDir(), "site.key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// strangerSigner is another key: another site's, or a forger's.
func strangerSigner(t *testing.T) mesh.Signer {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewKeySigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wakeCommand signs a command for target valid until expires.
func wakeCommand(t *testing.T, signer mesh.Signer, target lpeer.ID, expires time.Time, passiveAddrs ...string) *pb.WakeCommand {
	t.Helper()
	cmd, err := wake.Sign(signer, &pb.WakeBody{TargetId: []byte(target), ExpiresUnixMillis: expires.UnixMilli(), PassiveAddrs: passiveAddrs})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// sendUDP sends b to the passive port as one datagram.
func sendUDP(t *testing.T, port int, b []byte) {
	t.Helper()
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// sendTCP sends a framed command to the passive port over TCP.
func sendTCP(t *testing.T, port int, cmd *pb.WakeCommand) {
	t.Helper()
	b, err := wake.StreamFrame(cmd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func encode(t *testing.T, cmd *pb.WakeCommand) []byte {
	t.Helper()
	b, err := wake.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// coordinatorConnected reports whether the coordinator holds a connection
// to the peer.
func coordinatorConnected(site *coordinatortest.Site[*console.Client], id lpeer.ID) bool {
	return site.Coord.Host().Network().Connectedness(id) == network.Connected
}

// TestPassivePeerGoesPassiveAndIsWoken is the passive peer's life: it
// enrolls connected with its listener open, goes passive after the site's
// idle time without a session (the coordinator shows it passive, and holds
// no connection to it), refuses every bad command on its passive port
// without waking (garbage, oversized, forged, another site's, for another
// peer, expired, valid too long), wakes on the site's command at once, goes
// passive again once idle, and then refuses the same command replayed.
func TestPassivePeerGoesPassiveAndIsWoken(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := passiveSite(t)
	h, port := passivePeer(t, site, "quiet-01")
	id, _ := lpeer.Decode(h.id())

	st := h.state()
	if st.ConnectionType != "passive" || st.PassiveListen != "127.0.0.1:"+strconv.Itoa(port) || st.PassiveIdleSeconds != uint32(passiveIdle/time.Second) {
		t.Fatalf("state of a connected passive peer: type %q, listen %q, idle %d", st.ConnectionType, st.PassiveListen, st.PassiveIdleSeconds)
	}

	h.waitPassive()
	h.waitStatus(h.id(), "passive")
	coordinatortest.Eventually(t, 20*time.Second, "the coordinator's connection to the passive peer closed", func() bool {
		return !coordinatorConnected(site, id)
	})
	if st := h.state(); st.Connected || !st.Listening {
		t.Fatalf("passive peer: connected %v, listening %v", st.Connected, st.Listening)
	}

	// Bad input: none of it wakes the peer. (Commands are signed and
	// checked on the wall clock, as the coordinator signs them.)
	now := time.Now()
	signer := siteSigner(t, site)
	other := strangerSigner(t)
	forged, err := wake.Sign(other, &pb.WakeBody{TargetId: []byte(id), ExpiresUnixMillis: now.Add(30 * time.Second).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	forged.Body = mustResign(t, forged, signer.PeerID()) // claims our site, signed by another key
	sendUDP(t, port, []byte("hello, is anyone there?"))
	sendUDP(t, port, append([]byte(wake.Magic), make([]byte, wake.MaxCommand)...))
	sendUDP(t, port, encode(t, forged))
	sendUDP(t, port, encode(t, wakeCommand(t, other, id, now.Add(30*time.Second))))               // another site's
	sendUDP(t, port, encode(t, wakeCommand(t, signer, "12D3KooWother", now.Add(30*time.Second)))) // another peer
	sendUDP(t, port, encode(t, wakeCommand(t, signer, id, now.Add(-time.Second))))                // expired
	sendTCP(t, port, wakeCommand(t, signer, id, now.Add(10*time.Minute)))                         // valid too long
	h.waitCounters("seven refusals counted", func(c *peer.PassiveCounters) bool { return c.Refused() >= 7 })
	c := h.state().PassiveCounters
	if c.Accepted != 0 || c.Garbage != 1 || c.Oversized != 1 || c.Forged != 1 || c.OtherSite != 1 || c.OtherTarget != 1 ||
		c.Expired != 1 || c.TooLong != 1 {
		t.Fatalf("counters after bad input: %+v", c)
	}
	if !h.state().Listening || h.status(h.id()) != "passive" {
		t.Fatal("bad input woke the peer")
	}

	// The site's command wakes it, at once.
	good := wakeCommand(t, signer, id, time.Now().Add(wake.MaxValidity))
	sendUDP(t, port, encode(t, good))
	h.waitStatus(h.id(), "online")
	// The same command by another way (the coordinator and each waker send
	// it over UDP and TCP) is a duplicate, counted apart.
	sendTCP(t, port, good)
	h.waitCounters("one accepted, one duplicate", func(c *peer.PassiveCounters) bool { return c.Accepted == 1 && c.Duplicate == 1 })

	// Idle again: passive again; the same command, still in force, sent
	// again until it is past the seconds copies count as duplicates (wall
	// time), is a replay. Neither wakes the peer.
	h.waitPassive()
	h.waitStatus(h.id(), "passive")
	polls := 0
	coordinatortest.Eventually(t, 45*time.Second, "the command replayed past the duplicate window", func() bool {
		if c := h.state().PassiveCounters; c != nil && c.Replayed > 0 {
			return true
		}
		if polls++; polls%50 == 1 { // about once a second
			if !time.Now().Before(time.UnixMilli(mustBody(t, good).GetExpiresUnixMillis())) {
				t.Fatal("the command expired before its replay counted")
			}
			sendUDP(t, port, encode(t, good))
		}
		return false
	})
	if st := h.state(); !st.Listening || st.PassiveCounters.Accepted != 1 || h.status(h.id()) != "passive" {
		t.Fatalf("a replayed command woke the peer: %+v", st.PassiveCounters)
	}

	// A fresh one over TCP wakes it again.
	sendTCP(t, port, wakeCommand(t, signer, id, time.Now().Add(wake.MaxValidity)))
	h.waitStatus(h.id(), "online")
}

// mustResign returns cmd's body rewritten to name site (its signature no
// longer matches: a forgery).
func mustResign(t *testing.T, cmd *pb.WakeCommand, site lpeer.ID) []byte {
	t.Helper()
	body := mustBody(t, cmd)
	body.SiteId = []byte(site)
	raw, err := proto.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// mustBody decodes cmd's body, unchecked.
func mustBody(t *testing.T, cmd *pb.WakeCommand) *pb.WakeBody {
	t.Helper()
	body := new(pb.WakeBody)
	if err := proto.Unmarshal(cmd.GetBody(), body); err != nil {
		t.Fatal(err)
	}
	return body
}

// TestActivePeerNeverListens: an active peer opens no passive port and
// stays connected however long it is idle.
func TestActivePeerNeverListens(t *testing.T) {
	site := passiveSite(t)
	h := install(t, site, site.Installer(&pb.InstallerDefaults{Name: "busy-01", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE}, 0, week()).GetKey(), peer.InstallOptions{})
	port := coordinatortest.FreePort(t, "tcp")
	h.startWith(func(c *peer.RunConfig) { c.PassiveAddr, c.PassivePort = "127.0.0.1", port })
	h.waitStatus(h.id(), "online")
	h.waitWelcomed()
	for range 5 { // well past the idle time, one stats report at a time
		site.Clock.Advance(passiveIdle)
	}
	st := h.state()
	if st.ConnectionType != "active" || st.PassiveListen != "" || st.Listening {
		t.Fatalf("active peer: type %q, listen %q, listening %v", st.ConnectionType, st.PassiveListen, st.Listening)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("the passive port of an active peer is taken: %v", err)
	}
	ln.Close()
	if h.status(h.id()) != "online" {
		t.Fatal("active peer not online")
	}
}

// TestPassivePeerWithoutItsPortStaysConnected: a passive peer whose port is
// taken does not go passive (it could never be woken), says why in its
// state, and goes passive once the port is free again.
func TestPassivePeerWithoutItsPortStaysConnected(t *testing.T) {
	site := passiveSite(t)
	key := site.Installer(&pb.InstallerDefaults{Name: "blocked-01", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE}, 0, week()).GetKey()
	h := install(t, site, key, peer.InstallOptions{})
	port := coordinatortest.FreePort(t, "tcp")
	squatter, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	h.startWith(func(c *peer.RunConfig) { c.PassiveAddr, c.PassivePort = "127.0.0.1", port })
	h.waitStatus(h.id(), "online")
	h.waitWelcomed()
	if st := h.state(); st.PassiveError == "" || st.PassiveListen != "" {
		t.Fatalf("state with the port taken: error %q, listen %q", st.PassiveError, st.PassiveListen)
	}
	// Several idle times pass: each one tries the port again and stays.
	for range 4 {
		site.Clock.Advance(passiveIdle)
	}
	if st := h.state(); st.Listening || !st.Connected || h.status(h.id()) != "online" {
		t.Fatalf("went passive without a listener: listening %v, connected %v", st.Listening, st.Connected)
	}
	squatter.Close()
	h.waitPassive()
	if st := h.state(); st.PassiveError != "" || st.PassiveListen == "" {
		t.Fatalf("state once the port is free: error %q, listen %q", st.PassiveError, st.PassiveListen)
	}
}

// TestPassivePeerStaysWhileASessionIsOpen: an open session channel keeps a
// passive peer connected past its idle time; it goes passive once the
// channel has been closed for the idle time.
func TestPassivePeerStaysWhileASessionIsOpen(t *testing.T) {
	site := passiveSite(t)
	h, _ := passivePeer(t, site, "shell-01")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "shell-01", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := j.Open(ctx, execOpen("cat")) // runs until its stdin ends
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	stdinCtx, endStdin := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() {
		_, err := console.Exec(ctx, ch, console.ExecIO{Stdin: blockingReader{stdinCtx}, Stdout: discard{}, Stderr: discard{}})
		ended <- err
	}()
	for range 6 {
		site.Clock.Advance(passiveIdle)
	}
	if st := h.state(); st.Listening || h.status(h.id()) != "online" {
		t.Fatal("went passive with a session open")
	}
	endStdin()
	if err := <-ended; err != nil {
		t.Fatalf("session: %v", err)
	}
	ch.Close()
	h.waitPassive()
	h.waitStatus(h.id(), "passive")
}

// TestCloseWhilePassive: Close of a passive daemon ends Run, closes the
// passive port and leaves no goroutine.
func TestCloseWhilePassive(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs last: after the site's cleanups
	site := passiveSite(t)
	h, port := passivePeer(t, site, "sleepy-01")
	h.waitPassive()
	if err := h.d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run returned %v after Close", err)
		}
		h.cancel()
		h.cancel = nil
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running after Close returned")
	}
	for _, network := range []string{"tcp", "udp"} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var err error
		if network == "tcp" {
			var ln net.Listener
			if ln, err = net.Listen(network, addr); err == nil {
				ln.Close()
			}
		} else {
			var pc net.PacketConn
			if pc, err = net.ListenPacket(network, addr); err == nil {
				pc.Close()
			}
		}
		if err != nil {
			t.Errorf("passive port (%s) still taken after Close: %v", network, err)
		}
	}
	if st := h.state(); st.Listening || st.PassiveListen != "" {
		t.Errorf("state after Close: listening %v, listen %q", st.Listening, st.PassiveListen)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestChannelWhilePassiveReconnects: a technician who got a grant before
// the peer went passive may still open a channel with it (the peer checks
// grants itself, and the libp2p host keeps listening); the peer then
// connects again at once, so the session is reported and the peer shows
// online, and stays connected while the channel is open.
func TestChannelWhilePassiveReconnects(t *testing.T) {
	site := passiveSite(t)
	h, _ := passivePeer(t, site, "granted-01")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "granted-01", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	h.waitPassive()
	h.waitStatus(h.id(), "passive")
	ch, err := j.Open(ctx, execOpen("cat"))
	if err != nil {
		t.Fatalf("open with a grant from before: %v", err)
	}
	defer ch.Close()
	h.waitStatus(h.id(), "online")
	for range 3 {
		site.Clock.Advance(passiveIdle)
	}
	if st := h.state(); st.Listening {
		t.Fatal("went passive again with the channel open")
	}
}
