package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/quic-go/quic-go"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
	"github.com/jumpmesh/jumpmesh/mesh/reserve"
)

// ErrUninstalled is returned by Run after the peer uninstalled itself.
var ErrUninstalled = errors.New("peer uninstalled itself")

// RunConfig runs a peer from its install directory. Zero values are defaults.
type RunConfig struct {
	Dir     string
	Version string
	Clock   mesh.Clock
	Logger  *slog.Logger
	Sys     SysSource
	Backoff Backoff
	// PIDFile, when set, receives the process ID while Run runs.
	PIDFile string
	// Listen are the multiaddrs consoles reach the peer on (default: TCP
	// and QUIC on every interface, ports chosen by the system; a peer
	// behind jumpoints keeps the TCP ones).
	Listen []string
	// PassiveAddr is the IP a passive peer's listener binds ("": every
	// interface); PassivePort, when not zero, replaces the site's passive
	// port (-1: any free port). Tests and the lab set them.
	PassiveAddr string
	PassivePort int
}

// DefaultListen is where a peer listens for sessions unless told otherwise.
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/tcp/0", "/ip6/::/udp/0/quic-v1"}

func listenAddrs(l []string) []string {
	if len(l) == 0 {
		return DefaultListen
	}
	return l
}

// Backoff is the reconnect policy: capped exponential with full jitter.
type Backoff struct {
	Base, Max time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = time.Minute
	}
	return b
}

// delay is the wait before attempt n (0-based): uniform in [0, min(Max, Base·2ⁿ)].
func (b Backoff) delay(n int) time.Duration {
	ceil := b.Max
	if n < 30 {
		if d := b.Base << n; d > 0 && d < ceil {
			ceil = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// RestartGrace is how long after a welcomed session a peer treats a
// refused connection (nothing listens at its coordinator's address) as a
// coordinator restarting: see ReconnectAttempt.
const RestartGrace = 2 * time.Minute

// ReconnectAttempt is the backoff attempt to wait for after err, the nth
// failure in a row, sinceSession after the last welcomed session ended
// (negative: never welcomed). A coordinator restarting (Restarting) within RestartGrace
// keeps the wait within 2 × Base (attempt 1) instead of doubling it: a
// coordinator being restarted or patched is back in seconds, and its
// peers should be too — arriving together costs it nothing, since its
// handshake gate keeps what it cannot serve yet in the kernel's accept
// queue (coordinator/handshakes.go). Doubling made a 2,000-peer storm
// after a 7 s restart take 1.6 × the time the same peers took at once
// (BenchmarkReconnectStorm capacity-ratio). Any other error, or a refusal
// later than that, doubles as before; a refused dial costs only a SYN and
// the kernel's reset.
func ReconnectAttempt(n int, err error, sinceSession time.Duration) int {
	if sinceSession >= 0 && sinceSession < RestartGrace && Restarting(err) {
		return min(n, 1)
	}
	return n
}

// Restarting reports whether a failed attempt to reach the coordinator
// says that its process is gone or new: the dial was refused (nothing
// listens), or QUIC got a stateless reset (a new process knows nothing of
// the connection). Either costs the coordinator nothing.
func Restarting(err error) bool {
	var reset *quic.StatelessResetError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &reset)
}

// Daemon is a running peer.
type Daemon struct {
	cfg    RunConfig
	config *Config
	// site is the coordinator: the site's ID and the addresses the peer
	// dials (guarded by mu once Open returned; siteaddrs.go); keyAddrs are
	// the installer key's (or --jc-public-site-address), always dialled.
	site     peer.AddrInfo
	keyAddrs []ma.Multiaddr
	// foundAddrs are the coordinator addresses the site's relays gave
	// when none of site.Addrs answered (coorddht.go); guarded by mu.
	foundAddrs []ma.Multiaddr
	// lookedUp is when the peer last asked the relays (coorddht.go).
	lookedUp time.Time
	// movedTo are the addresses of a coordinator's order to move, for the
	// next dial only (move.go); guarded by mu.
	movedTo []ma.Multiaddr
	host    host.Host
	log     *slog.Logger
	clock   mesh.Clock
	backoff Backoff

	sess     *sessions
	reserver *reserve.Keeper
	// wakes are the wake orders being served (wake.go); passive is the
	// passive listener (passive.go).
	wakes   liveChannels
	passive passiveMode
	// jumpoints is the way to the site of a peer behind jumpoints; nil
	// for a peer that reaches it itself.
	jumpoints *jumpointRoute

	mu       sync.Mutex
	state    *State
	session_ *frame.Stream
	// natPrediction is the site's nat-prediction setting as the last
	// welcome told it (natprediction.go).
	natPrediction natPrediction
	// natProbing is the site's nat-probing setting as the last welcome
	// told it (natprobing.go).
	natProbing natProbing
	// bulk is the site's bulk-connections setting as the last welcome
	// told it (bulk.go).
	bulk bulkConnections
	// puncher is the running hole puncher (nil behind jumpoints); natNews
	// says it saw something new of the NAT (nat.go).
	puncher *punch.Puncher
	natNews chan struct{}
	// hairpin is the hairpin test of the NAT's UDP mapping (hairpin.go).
	hairpin hairpin

	// Lifetime (the relay's shape): ctx ends at Close, which then waits
	// for Run and everything Run started (wg) before closing the host.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	runMu     sync.Mutex
	ran       bool // Run was called: it runs once
	closing   bool // Close began: Run may not start
	closeOnce sync.Once
	closeErr  error
}

// ErrClosed is returned by Run on a daemon that was closed or already run.
var ErrClosed = errors.New("peer daemon closed")

// Open loads the install directory and starts the peer's libp2p host.
func Open(cfg RunConfig) (*Daemon, error) {
	config, err := LoadConfig(cfg.Dir)
	if err != nil {
		return nil, err
	}
	state, err := LoadState(cfg.Dir)
	if err != nil {
		return nil, err
	}
	site, err := siteAddrInfo(config)
	if err != nil {
		return nil, err
	}
	key, err := mesh.LoadKeyFile(filepath.Join(cfg.Dir, keyFile))
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc, jumpoints, err := hostConfig(cfg, config, key, log)
	if err != nil {
		return nil, err
	}
	hc.Extra = append(hc.Extra, mesh.CoordinatorOverTCP(site))
	if hc.ResourceManager, err = resourceManager(); err != nil {
		return nil, err
	}
	h, err := mesh.NewHost(hc)
	if err != nil {
		hc.ResourceManager.Close()
		return nil, err
	}
	keyAddrs := site.Addrs
	if config.PublicSiteAddress == "" {
		site.Addrs = dialSiteAddrs(keyAddrs, parseSiteAddrs(site.ID, state.SiteAddrs))
	}
	h.Peerstore().AddAddrs(site.ID, site.Addrs, peerstore.PermanentAddrTTL)
	d := &Daemon{cfg: cfg, config: config, site: site, keyAddrs: keyAddrs, host: h, state: state, natNews: make(chan struct{}, 1), clock: clockOr(cfg.Clock), backoff: cfg.Backoff.withDefaults(),
		jumpoints: jumpoints, log: log}
	d.sess = &sessions{gate: grant.NewGate(grant.DefaultLimits(), grant.WithClock(d.clock))}
	d.reserver = newReserver(d)
	d.bulk.host = h // asks relays for splice slots (bulk.go)
	d.passive.keyPassive = keyIsPassive(config)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if jumpoints != nil {
		jumpoints.setHost(h, func() bool { return d.snapshot().Contacted })
	}
	return d, nil
}

// hostConfig is the peer's host: listening for consoles (directly and,
// through /p2p-circuit, via the relays it reserves on) — or, for a peer
// behind jumpoints, listening on TCP only and dialing through them.
func hostConfig(cfg RunConfig, config *Config, key crypto.PrivKey, log *slog.Logger) (mesh.HostConfig, *jumpointRoute, error) {
	listen, err := mesh.ParseMultiaddrs(listenAddrs(cfg.Listen))
	if err != nil {
		return mesh.HostConfig{}, nil, err
	}
	if len(config.Jumpoints) == 0 {
		listen = append(listen, ma.StringCast("/p2p-circuit"))
		return mesh.HostConfig{Key: key, ListenAddrs: listen, RelayClient: true, Puncher: true, PatientDials: true}, nil, nil
	}
	if listen, err = tcpListen(listen); err != nil {
		return mesh.HostConfig{}, nil, err
	}
	route, err := newJumpointRoute(config, log)
	if err != nil {
		return mesh.HostConfig{}, nil, err
	}
	return mesh.HostConfig{Key: key, ListenAddrs: listen, TCPDialer: route.ForAddr, PatientDials: true}, route, nil
}

// siteAddrInfo is where the coordinator is: --jc-public-site-address if
// given, else the key's addresses; always the key's site ID, so a peer only
// ever talks to the site it was installed for.
func siteAddrInfo(c *Config) (peer.AddrInfo, error) {
	id, err := peer.Decode(c.Site)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("config: site %q: %w", c.Site, err)
	}
	raw := c.SiteAddrs
	if c.PublicSiteAddress != "" {
		raw = []string{c.PublicSiteAddress}
	}
	addrs, err := mesh.ParseMultiaddrs(raw)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	info := peer.AddrInfo{ID: id}
	for _, a := range addrs {
		transport, pid := peer.SplitAddr(a)
		if pid != "" && pid != id {
			return peer.AddrInfo{}, fmt.Errorf("config: coordinator address %s names %s, not the site %s", a, pid, id)
		}
		info.Addrs = append(info.Addrs, transport)
	}
	// The control stream goes over TCP when the coordinator offers it: a
	// QUIC connection cost the coordinator 1.6x the CPU per registration
	// and 1.7x the memory per online peer (docs/performance.md, "Peer scale").
	info.Addrs = mesh.PreferTCP(info.Addrs)
	return info, nil
}

// ID is the peer's ID.
func (d *Daemon) ID() peer.ID { return d.host.ID() }

// Close stops the daemon: it ends Run (as if its context ended), waits for
// Run to have stopped everything it started (the coordinator stream and its
// reader, the reconnect wait, the statistics timer, the relay reservations,
// the puncher, every channel being served), then closes the host. It is
// safe to call more than once, and without Run.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.runMu.Lock()
		d.closing = true
		d.runMu.Unlock()
		d.cancel()
		d.wg.Wait()
		// libp2p does not close a resource manager it was given.
		rm := d.host.Network().ResourceManager()
		d.closeErr = errors.Join(d.host.Close(), rm.Close())
	})
	return d.closeErr
}

// enter admits the one Run; false once Close began or Run was called.
func (d *Daemon) enter() bool {
	d.runMu.Lock()
	defer d.runMu.Unlock()
	if d.closing || d.ran {
		return false
	}
	d.ran = true
	d.wg.Add(1)
	return true
}

// Run keeps the peer connected until ctx ends, Close is called, the
// coordinator orders an uninstall, or a lifecycle rule does
// (ErrUninstalled). It returns only once every goroutine it started has
// ended; the channels being served end with it. A daemon runs once.
func (d *Daemon) Run(ctx context.Context) error {
	if !d.enter() {
		return ErrClosed
	}
	defer d.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.ctx, cancel)()
	if err := d.writePID(); err != nil {
		return err
	}
	defer d.removePID()
	// A new process holds no reservation yet, whatever the last one held.
	d.updateState(func(s *State) { s.Connected = false; s.PID = os.Getpid(); s.Relays = nil })
	d.serveSessions()
	defer d.stopSessions()
	d.serveWake()
	defer d.stopWake()
	d.syncPassive()
	defer d.stopPassive()
	var reserving sync.WaitGroup
	defer reserving.Wait()
	if d.jumpoints != nil {
		// Behind jumpoints: no relays, no punching; watch the jumpoints.
		reserving.Go(func() { d.jumpoints.run(ctx) })
	} else {
		// The coordinator and the relays are the observers the puncher
		// trusts to say what our NAT maps our listening port to.
		// Port-mapping probing aims only at the console IP the coordinator
		// signed in a grant the console showed this peer (grant.Gate).
		puncher, err := punch.Start(d.host, func(id peer.ID) bool { return id == d.site.ID || d.reserver.IsRelay(id) }, d.log,
			punch.WithPrediction(d.natPrediction.on), punch.WithNATChange(d.natChanged),
			punch.WithProbing(d.natProbing.on), punch.WithGranted(d.sess.gate.ConsoleIP), punch.WithGrantCheck(d.checkProbeGrant))
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.puncher = puncher
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			d.puncher = nil
			d.mu.Unlock()
			puncher.Close()
		}()
		reserving.Go(func() { d.reserver.Run(ctx) })
	}
	defer cancel() // before the waits above: they wait for work ctx ends
	attempt := 0
	var sessionEnded time.Time // the last welcomed session's end
	for {
		if reason := UninstallReason(d.config, d.snapshot(), d.clock.Now()); reason != "" {
			return d.uninstallSelf(reason, false)
		}
		welcomed, wait, err := d.session(ctx)
		switch {
		case ctx.Err() != nil:
			d.updateState(func(s *State) { s.Connected = false; s.PID = 0 })
			return nil
		case errors.Is(err, errUninstallOrdered):
			return d.uninstallSelf(err.Error(), false)
		}
		if welcomed {
			// The session just ended: that was the last contact.
			now := d.clock.Now().UTC()
			d.updateState(func(s *State) { s.LastContact = now })
			attempt = 0
			sessionEnded = now
		}
		if errors.Is(err, errWentPassive) {
			// Passive until woken; then connect at once (passive.go).
			if !d.passiveWait(ctx) {
				d.updateState(func(s *State) { s.Connected = false; s.PID = 0 })
				return nil
			}
			continue
		}
		if !errors.As(err, new(moveOrder)) { // asked to move: no failure
			d.recordError(err)
		}
		if wait == 0 && attempt >= lookupAfter && catalog.HasCode(err, catalog.CodeCoordinatorDown) {
			// No coordinator at any address known, three times in a
			// row: ask the relays where the site is now (coorddht.go).
			d.lookupCoordinators(ctx)
		}
		if wait == 0 {
			// The next attempt dials afresh: a connection left from the
			// ended session (a QUIC one whose close was lost when the
			// coordinator restarted) would be reused by Connect and hold
			// the next hello until its idle timeout. Not after a
			// retry-after: the connection is sound, and keeping it saves
			// the coordinator a handshake.
			_ = d.host.Network().ClosePeer(d.site.ID)
		}
		if wait == 0 {
			since := time.Duration(-1)
			if !sessionEnded.IsZero() {
				since = d.clock.Now().Sub(sessionEnded)
			}
			wait = d.backoff.delay(ReconnectAttempt(attempt, err, since))
			attempt++
		} else {
			wait += d.backoff.delay(0) // the coordinator's retry-after plus jitter
		}
		d.log.Info("reconnecting", "in", wait.Round(time.Millisecond), "error", err)
		if !d.sleep(ctx, wait) {
			d.updateState(func(s *State) { s.Connected = false; s.PID = 0 })
			return nil
		}
	}
}

// sleep waits d on the daemon's clock; false if ctx ended first.
func (d *Daemon) sleep(ctx context.Context, wait time.Duration) bool {
	t := d.clock.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

func (d *Daemon) writePID() error {
	if d.cfg.PIDFile == "" {
		return nil
	}
	return os.WriteFile(d.cfg.PIDFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644)
}

func (d *Daemon) removePID() {
	if d.cfg.PIDFile != "" {
		os.Remove(d.cfg.PIDFile)
	}
}

func (d *Daemon) snapshot() *State {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := *d.state
	return &s
}

// updateState changes the state and writes it out.
func (d *Daemon) updateState(fn func(*State)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d.state)
	if err := saveState(d.cfg.Dir, d.state); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("saving state", "error", err)
	}
}

func (d *Daemon) recordError(err error) {
	if err == nil {
		return
	}
	now := d.clock.Now()
	d.updateState(func(s *State) {
		s.Connected = false
		s.LastError, s.LastErrorAt = err.Error(), now.UTC()
		s.LastErrorCode = string(catalog.CodeOf(err))
	})
}
