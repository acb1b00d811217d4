package scale

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	lphost "github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
	"github.com/jumpmesh/jumpmesh/peer"
)

// FleetConfig describes a fleet of lightweight peers. Zero values but Key
// and Peers are defaults.
type FleetConfig struct {
	// Key is the installer key: the site's ID and addresses, and what an
	// unknown peer enrolls with.
	Key   string
	Peers int
	// Backoff is the reconnect policy (default: the daemon's, 1 s base,
	// 1 min cap).
	Backoff peer.Backoff
	// Transport, "tcp" or "quic", keeps only the key's addresses of that
	// transport; "" keeps them all.
	Transport string
	// Hostname prefixes the hostname each peer reports ("scale" →
	// "scale-00042"); it becomes the peer's name.
	Hostname string
	// Addrs, when set, are the coordinator addresses the peers dial
	// instead of the key's (sim scale --coordinators pins each part of a
	// fleet to one coordinator of the site).
	Addrs []ma.Multiaddr
}

// A key that names jumpoints puts the fleet behind them (jumpoint.go):
// every peer reaches the site's TCP addresses through a tunnel, as a
// daemon installed with that key does.

func (c FleetConfig) backoff() peer.Backoff {
	b := c.Backoff
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = time.Minute
	}
	return b
}

func (c FleetConfig) hostname() string {
	if c.Hostname == "" {
		return "scale"
	}
	return c.Hostname
}

// FleetTotals are counted over all peers of a fleet.
type FleetTotals struct {
	// Welcomed peers have been welcomed at least once; Welcomes counts
	// every welcome, reconnections too.
	Welcomed int64 `json:"welcomed"`
	Welcomes int64 `json:"welcomes"`
	// Retries are hellos the coordinator told to come back later
	// (its connection rate).
	Retries int64 `json:"retries"`
	// Refusals are hellos answered with an error.
	Refusals int64 `json:"refusals"`
	// Failures are attempts that ended before a reply (dial, stream, hello),
	// less Down.
	Failures int64 `json:"failed_attempts"`
	// Down are attempts that met a coordinator stopped or restarting
	// (peer.Restarting: refused, or a QUIC stateless reset): no work of its
	// was lost on them.
	Down int64 `json:"down_dials"`
	// GaveUp are peers told to uninstall, which ends a real daemon.
	GaveUp int64 `json:"gave_up"`
	// Reported peers have written their first statistics (right after
	// their first welcome, as the daemon does).
	Reported int64 `json:"reported"`
	// Updates are settings updates the peers received (PeerDown.update).
	Updates int64 `json:"updates"`
	// Sample is the last refusal or failure, for the report.
	Sample string `json:"sample_error,omitempty"`
	// FailureReasons counts Failures by the step that failed and how
	// ("reply: stream reset by the coordinator, code 0x0"): FailureReason.
	FailureReasons map[string]int64 `json:"failure_reasons,omitempty"`
}

// FailureReason names a failed attempt's step (dial, stream, hello,
// reply) and how it failed, for FleetTotals.FailureReasons.
func FailureReason(err error) string {
	step := "attempt"
	var se *stepError
	if errors.As(err, &se) {
		step = se.step
	}
	var reset *network.StreamError
	var how string
	switch {
	case errors.As(err, &reset) && reset.Remote:
		how = fmt.Sprintf("stream reset by the coordinator, code %#x", uint32(reset.ErrorCode))
	case errors.As(err, &reset):
		how = fmt.Sprintf("stream reset here, code %#x", uint32(reset.ErrorCode))
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		how = "timed out"
	case errors.Is(err, syscall.ECONNRESET):
		how = "connection reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		how = "connection closed (EOF)"
	default:
		how = err.Error()
		if len(how) > 80 {
			how = how[:80] + "…"
		}
	}
	return step + ": " + how
}

// stepError names the step of an attempt that failed.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// Fleet is N lightweight peers, one libp2p host and fresh key each, that
// speak the peer protocol as peer.Daemon does: hello with the installer
// key and host facts, retry-after honoured plus one base of jitter,
// reconnection with capped exponential backoff and full jitter, statistics
// after the welcome and every interval. It is not the daemon: no install
// directory, no state file, one statistics sample reused; thousands of real
// daemons in one process would measure their state-file writes.
type Fleet struct {
	cfg    FleetConfig
	peers  []*fleetPeer
	totals *fleetTotals

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	startAt time.Time
	once    sync.Once
}

// NewFleet builds the fleet's hosts (dial-only, one fresh key each). Its
// peers do nothing until Start; Close stops them and closes the hosts.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Peers <= 0 {
		return nil, fmt.Errorf("fleet: %d peers", cfg.Peers)
	}
	raiseFileLimit(cfg.Peers) // its connections, and the coordinator's when it shares the process
	key, err := installerkey.Parse(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	site := lpeer.AddrInfo{ID: key.Site}
	keep := cfg.Transport
	if len(key.Jumpoints) > 0 {
		keep = "tcp" // tunnels are TCP
	}
	addrs := key.SiteAddrs
	if len(cfg.Addrs) > 0 {
		addrs = cfg.Addrs
	}
	for _, a := range addrs {
		if transport, _ := lpeer.SplitAddr(a); keepTransport(keep, transport) {
			site.Addrs = append(site.Addrs, transport)
		}
	}
	if len(site.Addrs) == 0 {
		return nil, fmt.Errorf("fleet: the installer key has no %s address", keep)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{cfg: cfg, totals: &fleetTotals{peers: int64(cfg.Peers), all: make(chan struct{}), allReported: make(chan struct{})}, ctx: ctx, cancel: cancel}
	if f.peers, err = newFleetPeers(cfg, site, newJumpointRoute(key), f.totals); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func keepTransport(want string, a ma.Multiaddr) bool {
	code := map[string]int{"tcp": ma.P_TCP, "quic": ma.P_QUIC_V1}[want]
	if code == 0 {
		return true
	}
	_, err := a.ValueForProtocol(code)
	return err == nil
}

// newFleetPeers makes one dial-only host with a fresh key per peer, on
// every CPU. On error, the hosts made so far are in the result.
func newFleetPeers(cfg FleetConfig, site lpeer.AddrInfo, jumpoints *jumpointRoute, t *fleetTotals) ([]*fleetPeer, error) {
	info := peer.SysSource{}.HostInfo("scale")
	stats := &pb.PeerUp{Body: &pb.PeerUp_Stats{Stats: peer.SysSource{}.Stats("", time.Now())}}
	peers := make([]*fleetPeer, cfg.Peers)
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < cfg.Peers; i = int(next.Add(1) - 1) {
				k, _, err := crypto.GenerateEd25519Key(rand.Reader)
				if err != nil {
					errs <- err
					return
				}
				// As the daemon: TCP to the coordinator when it offers TCP.
				hc := mesh.HostConfig{Key: k, PatientDials: true, Extra: []libp2p.Option{mesh.CoordinatorOverTCP(site)}}
				var d *tunnel.Dialer
				if jumpoints != nil {
					d = jumpoints.dialer()
					hc.TCPDialer = d.ForAddr
				}
				h, err := mesh.NewHost(hc)
				if err != nil {
					errs <- err
					return
				}
				if d != nil {
					jumpoints.bind(d, h)
				}
				h.Peerstore().AddAddrs(site.ID, site.Addrs, peerstore.PermanentAddrTTL)
				pi := proto.CloneOf(info)
				pi.Hostname = fmt.Sprintf("%s-%05d", cfg.hostname(), i)
				hello := &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{InstallerKey: cfg.Key, Info: pi}}}
				peers[i] = &fleetPeer{host: h, site: site, hello: hello, stats: stats, backoff: cfg.backoff(), totals: t}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return slices.DeleteFunc(peers, func(p *fleetPeer) bool { return p == nil }), <-errs
}

// IDs are the fleet's peer IDs, in peer order.
func (f *Fleet) IDs() []lpeer.ID {
	ids := make([]lpeer.ID, len(f.peers))
	for i, p := range f.peers {
		ids[i] = p.host.ID()
	}
	return ids
}

// Start starts every peer: all at once when rate ≤ 0, else rate peers per
// second, in order. It returns at once; it may be called once.
func (f *Fleet) Start(rate float64) {
	if !f.started.CompareAndSwap(false, true) {
		return
	}
	f.startAt = time.Now()
	launch := func(p *fleetPeer) {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); p.run(f.ctx) }()
	}
	if rate <= 0 {
		for _, p := range f.peers {
			launch(p)
		}
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		timer := time.NewTimer(0)
		defer timer.Stop()
		for i := 0; i < len(f.peers); {
			select {
			case <-f.ctx.Done():
				return
			case <-timer.C:
			}
			// Start every peer whose time has come, then sleep until the next.
			for elapsed := time.Since(f.startAt); i < len(f.peers) && time.Duration(i)*interval <= elapsed; i++ {
				launch(f.peers[i])
			}
			timer.Reset(time.Until(f.startAt.Add(time.Duration(i) * interval)))
		}
	}()
}

// Wait blocks until every peer has been welcomed once, and returns the time
// from Start to the last first welcome.
func (f *Fleet) Wait(ctx context.Context) (time.Duration, error) {
	select {
	case <-f.totals.all:
		return f.totals.allAt.Sub(f.startAt), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%d of %d peers welcomed: %w", f.totals.welcomed.Load(), f.totals.peers, ctx.Err())
	}
}

// WaitReported blocks until every peer has written its first statistics
// to the coordinator, the message the daemon sends right after its welcome.
func (f *Fleet) WaitReported(ctx context.Context) error {
	select {
	case <-f.totals.allReported:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d of %d peers sent their first statistics: %w", f.totals.reported.Load(), f.totals.peers, ctx.Err())
	}
}

// Latencies are, for every peer welcomed so far, the time from its start
// to its first welcome (retries and backoff included), sorted.
func (f *Fleet) Latencies() []time.Duration {
	var out []time.Duration
	for _, p := range f.peers {
		if d := p.firstWelcome.Load(); d > 0 {
			out = append(out, time.Duration(d))
		}
	}
	slices.Sort(out)
	return out
}

// Totals are the fleet's counts so far.
func (f *Fleet) Totals() FleetTotals {
	t := f.totals
	t.mu.Lock()
	sample := t.sample
	t.mu.Unlock()
	t.mu.Lock()
	reasons := maps.Clone(t.reasons)
	t.mu.Unlock()
	return FleetTotals{Welcomed: t.welcomed.Load(), Welcomes: t.welcomes.Load(), Retries: t.retries.Load(),
		Refusals: t.refusals.Load(), Failures: t.failures.Load(), Down: t.down.Load(), GaveUp: t.gaveUp.Load(), Reported: t.reported.Load(),
		Updates: t.updates.Load(), Sample: sample, FailureReasons: reasons}
}

// Close stops the peers and closes their hosts, so that their connections
// end now rather than at the coordinator's idle timeout. It is safe to call
// more than once.
func (f *Fleet) Close() error {
	f.once.Do(func() {
		f.cancel()
		f.wg.Wait()
		work := make(chan *fleetPeer)
		var wg sync.WaitGroup
		for w := 0; w < 4*runtime.GOMAXPROCS(0); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range work {
					p.host.Close()
				}
			}()
		}
		for _, p := range f.peers {
			work <- p
		}
		close(work)
		wg.Wait()
	})
	return nil
}

// fleetTotals are counted over all peers of the fleet.
type fleetTotals struct {
	peers    int64
	welcomed atomic.Int64 // peers welcomed at least once
	all      chan struct{}
	allAt    time.Time // when the last peer was first welcomed; set before all closes
	welcomes atomic.Int64
	retries  atomic.Int64
	refusals atomic.Int64
	failures atomic.Int64
	down     atomic.Int64
	gaveUp   atomic.Int64
	// reported counts peers whose first statistics were written;
	// allReported closes when all have been.
	reported    atomic.Int64
	allReported chan struct{}
	updates     atomic.Int64
	mu          sync.Mutex
	sample      string
	reasons     map[string]int64 // failures by FailureReason
}

// note counts err in n and keeps it as the sample.
func (t *fleetTotals) note(n *atomic.Int64, err error) {
	n.Add(1)
	t.mu.Lock()
	t.sample = err.Error()
	t.mu.Unlock()
}

// failed counts a failed attempt by its reason.
func (t *fleetTotals) failed(err error) {
	reason := FailureReason(err)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reasons == nil {
		t.reasons = map[string]int64{}
	}
	t.reasons[reason]++
}

// fleetPeer is one lightweight peer.
type fleetPeer struct {
	host    lphost.Host
	site    lpeer.AddrInfo
	hello   *pb.PeerUp
	stats   *pb.PeerUp
	backoff peer.Backoff
	totals  *fleetTotals
	// start is when run began; firstWelcome the time from it to the first
	// welcome in nanoseconds, 0 before.
	start        time.Time
	firstWelcome atomic.Int64
	reported     bool // first statistics written (run's goroutine only)
}

var (
	errUninstallOrder = errors.New("uninstall ordered")
	errRefused        = errors.New("refused")
)

// run reconnects as peer.Daemon.Run does: after a session that was welcomed
// the backoff starts over (and a refused dial soon after does not double
// it: peer.ReconnectAttempt); a retry-after is honoured plus one base of
// jitter.
func (p *fleetPeer) run(ctx context.Context) {
	p.start = time.Now()
	attempt := 0
	var ended time.Time // the last welcomed session's end
	for ctx.Err() == nil {
		welcomed, wait, err := p.session(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errUninstallOrder):
			p.totals.gaveUp.Add(1)
			return
		case errors.Is(err, errRefused):
			p.totals.note(&p.totals.refusals, err)
		case err != nil && !welcomed && wait == 0 && peer.Restarting(err):
			p.totals.down.Add(1)
		case err != nil && !welcomed && wait == 0:
			p.totals.note(&p.totals.failures, err)
			p.totals.failed(err)
		}
		if welcomed {
			attempt = 0
			ended = time.Now()
		}
		if wait == 0 {
			// As the daemon: the next attempt dials afresh (not after a
			// retry-after).
			_ = p.host.Network().ClosePeer(p.site.ID)
		}
		if wait == 0 {
			since := time.Duration(-1)
			if !ended.IsZero() {
				since = time.Since(ended)
			}
			wait = fullJitter(p.backoff, peer.ReconnectAttempt(attempt, err, since))
			attempt++
		} else {
			wait += fullJitter(p.backoff, 0)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// fullJitter is the daemon's backoff: uniform in [0, min(Max, Base·2ⁿ)].
func fullJitter(b peer.Backoff, n int) time.Duration {
	ceil := b.Max
	if n < 30 {
		if d := b.Base << n; d > 0 && d < ceil {
			ceil = d
		}
	}
	return time.Duration(mrand.Int64N(int64(ceil) + 1))
}

// session is one connection: hello, then the reply, then (welcomed)
// statistics every interval until the stream ends.
func (p *fleetPeer) session(ctx context.Context) (welcomed bool, retryAfter time.Duration, err error) {
	cctx, cancel := context.WithTimeout(ctx, mesh.PatientDialTimeout)
	defer cancel()
	// As the daemon does (peer/session.go): past libp2p's dial backoff,
	// the fleet's own retry paces redials.
	cctx = network.WithForceDirectDial(cctx, "peer to its coordinator: the daemon paces its own redials")
	if err := p.host.Connect(cctx, p.site); err != nil {
		return false, 0, &stepError{"dial", err}
	}
	st, err := p.host.NewStream(cctx, p.site.ID, peerproto.Protocol)
	if err != nil {
		return false, 0, &stepError{"stream", err}
	}
	ms := frame.NewStream(st, peerproto.MaxMessage)
	defer ms.Reset()
	if err := ms.Write(p.hello, 10*time.Second); err != nil {
		return false, 0, &stepError{"hello", err}
	}
	var down pb.PeerDown
	if err := ms.Read(&down, 30*time.Second); err != nil {
		return false, 0, &stepError{"reply", err}
	}
	t := p.totals
	switch b := down.GetBody().(type) {
	case *pb.PeerDown_Retry:
		t.retries.Add(1)
		return false, time.Duration(b.Retry.GetAfterMillis()) * time.Millisecond, errors.New("retry")
	case *pb.PeerDown_Uninstall:
		return false, 0, errUninstallOrder
	case *pb.PeerDown_Welcome:
	default:
		return false, 0, fmt.Errorf("%w: %v", errRefused, &down)
	}
	t.welcomes.Add(1)
	if p.firstWelcome.Load() == 0 {
		p.firstWelcome.Store(int64(max(time.Since(p.start), 1)))
		if t.welcomed.Add(1) == t.peers {
			t.allAt = time.Now()
			close(t.all)
		}
	}
	interval := max(time.Duration(down.GetWelcome().GetStatsIntervalSeconds())*time.Second, 5*time.Second)
	return true, 0, p.online(ctx, ms, interval)
}

// online sends statistics until the stream ends or ctx is done.
func (p *fleetPeer) online(ctx context.Context, ms *frame.Stream, interval time.Duration) error {
	readErr := make(chan error, 1)
	go func() {
		for {
			var m pb.PeerDown
			if err := ms.Read(&m, 0); err != nil {
				readErr <- err
				return
			}
			if m.GetUninstall() != nil {
				readErr <- errUninstallOrder
				return
			}
			if m.GetUpdate() != nil {
				p.totals.updates.Add(1)
			}
		}
	}()
	defer func() { ms.Reset(); <-readErr }()
	if err := ms.Write(p.stats, 10*time.Second); err != nil {
		return err
	}
	if !p.reported {
		p.reported = true
		if t := p.totals; t.reported.Add(1) == t.peers {
			close(t.allReported)
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			readErr <- err // for the deferred wait
			return err
		case <-tick.C:
			if err := ms.Write(p.stats, 10*time.Second); err != nil {
				return err
			}
		}
	}
}
