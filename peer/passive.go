package peer

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// Passive peers (the seeds' passive Jump Client, issue 14). A peer whose
// effective connection type is passive — its installer's, else the site's
// default-connection-type the coordinator filled in, as the welcome's peer
// record says (before the first welcome: the installer key's) — listens on
// the passive port (TCP and UDP, mesh/wake's listener) for as long as it
// runs. It starts connected, so it enrolls and reports its facts, and goes
// passive once no session channel has been open for passive_idle_seconds
// (the welcome's, on the daemon's clock):
//
//  1. it sends PeerUp{passive{port}}, closes its side of the stream and
//     waits (a few seconds at most) for the coordinator to close its own;
//  2. it drops its relay reservations and closes every connection (the
//     coordinator's, a jumpoint's tunnels with it), and only listens;
//  3. a wake command the listener accepts (signed by the pinned site, for
//     this peer, in force, not replayed) makes it reconnect at once, with
//     no backoff; it stays connected until idle again.
//
// A peer whose listener cannot open (the port is taken) stays connected:
// going passive without it would make the peer unreachable. It tries to
// open it again at every idle time. While passive, the offline limit still
// runs from the last contact, as for any peer out of touch.

const (
	// defaultPassiveIdle is the site's default passive-idle-seconds.
	defaultPassiveIdle = 900 * time.Second
	// passiveCloseWait bounds the wait for the coordinator to close the
	// stream after PeerUp{passive} (wall time: a network wait).
	passiveCloseWait = 5 * time.Second
	// passiveStatsEvery is how often the listener's counters, when they
	// changed, are written to state.json for `peer status` (wall time).
	passiveStatsEvery = 2 * time.Second
)

// Connection types as state.json records them.
const (
	connActive  = "active"
	connPassive = "passive"
)

// errWentPassive ends a coordinator session the peer closed to go passive.
var errWentPassive = errors.New("went passive")

// PassiveCounters are the passive listener's counters since the daemon
// started: what it accepted and what it refused, by reason.
type PassiveCounters struct {
	Accepted    uint64 `json:"accepted,omitempty"`
	Garbage     uint64 `json:"garbage,omitempty"`
	Oversized   uint64 `json:"oversized,omitempty"`
	Forged      uint64 `json:"forged,omitempty"`
	OtherSite   uint64 `json:"other_site,omitempty"`
	OtherTarget uint64 `json:"other_target,omitempty"`
	Expired     uint64 `json:"expired,omitempty"`
	TooLong     uint64 `json:"too_long,omitempty"`
	Replayed    uint64 `json:"replayed,omitempty"`
	Duplicate   uint64 `json:"duplicate,omitempty"`
	RateLimited uint64 `json:"rate_limited,omitempty"`
	Busy        uint64 `json:"busy,omitempty"`
}

func passiveCounters(s wake.PassiveStats) *PassiveCounters {
	return &PassiveCounters{Accepted: s.Accepted, Garbage: s.Garbage, Oversized: s.Oversized, Forged: s.Forged,
		OtherSite: s.OtherSite, OtherTarget: s.OtherTarget, Expired: s.Expired, TooLong: s.TooLong,
		Replayed: s.Replayed, Duplicate: s.Duplicate, RateLimited: s.RateLimited, Busy: s.Busy}
}

// Refused is the sum of the refusals.
func (c *PassiveCounters) Refused() uint64 {
	if c == nil {
		return 0
	}
	return c.Garbage + c.Oversized + c.Forged + c.OtherSite + c.OtherTarget + c.Expired + c.TooLong +
		c.Replayed + c.RateLimited + c.Busy
}

// passiveMode is the daemon's passive listener.
type passiveMode struct {
	// keyPassive is the installer key's connection type, used until the
	// coordinator said.
	keyPassive bool

	mu     sync.Mutex
	ln     *wake.Passive
	asked  int           // the port ln was opened for (RunConfig's or the site's)
	stop   chan struct{} // ends the counters' saver
	saving sync.WaitGroup
}

// keyIsPassive reads the connection type the installer key carries.
func keyIsPassive(c *Config) bool {
	k, err := installerkey.Parse(c.InstallerKey)
	return err == nil && k.Body.GetDefaults().GetConnectionType() == pb.ConnectionType_CONNECTION_TYPE_PASSIVE
}

// passiveWanted says whether the peer is passive and the port it listens on.
func (d *Daemon) passiveWanted() (bool, int) {
	s := d.snapshot()
	passive := d.passive.keyPassive
	if s.ConnectionType != "" {
		passive = s.ConnectionType == connPassive
	}
	port := int(s.PassivePort)
	if port == 0 {
		port = wake.DefaultPassivePort
	}
	if d.cfg.PassivePort != 0 {
		port = d.cfg.PassivePort
	}
	return passive, port
}

// passiveIdle is how long the peer stays connected without a session.
func (d *Daemon) passiveIdle() time.Duration {
	if s := d.snapshot().PassiveIdleSeconds; s > 0 {
		return time.Duration(s) * time.Second
	}
	return defaultPassiveIdle
}

// learnPassive keeps what a welcome or update says of passive mode.
func learnPassive(s *State, w *pb.PeerWelcome) {
	switch w.GetPeer().GetSettings().GetConnectionType() {
	case pb.ConnectionType_CONNECTION_TYPE_PASSIVE:
		s.ConnectionType = connPassive
	case pb.ConnectionType_CONNECTION_TYPE_ACTIVE:
		s.ConnectionType = connActive
	}
	if w.GetPassivePort() > 0 {
		s.PassivePort = w.GetPassivePort()
	}
	if w.GetPassiveIdleSeconds() > 0 {
		s.PassiveIdleSeconds = w.GetPassiveIdleSeconds()
	}
}

// syncPassive opens, moves or closes the listener as the peer's settings
// now want. It returns the listener, nil when there is none.
func (d *Daemon) syncPassive() *wake.Passive {
	want, port := d.passiveWanted()
	p := &d.passive
	p.mu.Lock()
	defer p.mu.Unlock()
	if !want {
		d.closeListenerLocked()
		if d.snapshot().PassiveError != "" {
			d.updateState(func(s *State) { s.PassiveError = "" })
		}
		return nil
	}
	if p.ln != nil && p.asked == port {
		return p.ln
	}
	d.closeListenerLocked()
	// Commands' expiry, the replay cache and the check rate run on the wall
	// clock, as the coordinator signs them (wake.go).
	ln, err := wake.ListenPassive(wake.PassiveConfig{Port: port, Addr: d.cfg.PassiveAddr, Site: d.site.ID, Self: d.host.ID(), Log: d.log})
	if err != nil {
		d.log.Warn("passive port: cannot listen; staying connected", "port", port, "error", err)
		d.updateState(func(s *State) { s.PassiveListen, s.PassiveError = "", err.Error() })
		return nil
	}
	tcp, _ := ln.Addr()
	p.ln, p.asked, p.stop = ln, port, make(chan struct{})
	d.updateState(func(s *State) { s.PassiveListen, s.PassiveError, s.PassiveCounters = tcp.String(), "", nil })
	d.log.Info("passive port open", "addr", tcp)
	stop := p.stop
	p.saving.Go(func() { d.saveCounters(ln, stop) })
	return ln
}

// stopPassive closes the listener (the daemon's end).
func (d *Daemon) stopPassive() {
	d.passive.mu.Lock()
	defer d.passive.mu.Unlock()
	d.closeListenerLocked()
}

func (d *Daemon) closeListenerLocked() {
	p := &d.passive
	if p.ln == nil {
		return
	}
	close(p.stop)
	p.saving.Wait()
	if err := p.ln.Close(); err != nil {
		d.log.Warn("closing the passive port", "error", err)
	}
	p.ln, p.asked, p.stop = nil, 0, nil
	d.updateState(func(s *State) { s.PassiveListen, s.Listening = "", false })
}

// listener is the open listener, or nil.
func (d *Daemon) listener() *wake.Passive {
	d.passive.mu.Lock()
	defer d.passive.mu.Unlock()
	return d.passive.ln
}

// saveCounters writes the listener's counters to the state when they
// changed, until stop; then once more.
func (d *Daemon) saveCounters(ln *wake.Passive, stop <-chan struct{}) {
	var last wake.PassiveStats
	save := func() {
		st := ln.Stats()
		st.Checked = 0 // not shown; it changes with every refusal counted
		if st == last {
			return
		}
		last = st
		d.log.Info("passive port counters", "counters", st)
		d.updateState(func(s *State) { s.PassiveCounters = passiveCounters(st) })
	}
	t := time.NewTicker(passiveStatsEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			save()
			return
		case <-t.C:
			save()
		}
	}
}

// idleTracker counts the admitted session channels open and knows since
// when none has been. Its zero value is ready.
type idleTracker struct {
	mu      sync.Mutex
	open    int
	since   time.Time
	changed chan struct{}
}

func (t *idleTracker) changes() chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changesLocked()
}

func (t *idleTracker) changesLocked() chan struct{} {
	if t.changed == nil {
		t.changed = make(chan struct{}, 1)
	}
	return t.changed
}

func (t *idleTracker) signalLocked() {
	select {
	case t.changesLocked() <- struct{}{}:
	default:
	}
}

// busy counts a channel admitted; done its end at now.
func (t *idleTracker) busy() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open++
	t.signalLocked()
}

func (t *idleTracker) done(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open--
	if t.open == 0 {
		t.since = now
	}
	t.signalLocked()
}

// restart counts idleness from now (a new coordinator session).
func (t *idleTracker) restart(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.After(t.since) {
		t.since = now
	}
}

// idleFor is how long no channel has been open at now; false while one is.
func (t *idleTracker) idleFor(now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open > 0 {
		return 0, false
	}
	return now.Sub(t.since), true
}

// idleWatch is a coordinator session's idle timer (the daemon's clock):
// armed while the peer is passive and no channel is open.
type idleWatch struct {
	d *Daemon
	t mesh.Timer
	c <-chan time.Time // nil while disarmed
}

// watchIdle starts the idle timer of a session that begins now.
func (d *Daemon) watchIdle() *idleWatch {
	d.sess.idle.restart(d.clock.Now())
	w := &idleWatch{d: d, t: d.clock.NewTimer(time.Hour)}
	w.t.Stop()
	w.rearm()
	return w
}

// fired receives when the peer may have been idle long enough.
func (w *idleWatch) fired() <-chan time.Time { return w.c }

// changed receives when a channel opened or ended.
func (w *idleWatch) changed() <-chan struct{} { return w.d.sess.idle.changes() }

func (w *idleWatch) stop() { w.t.Stop() }

// rearm sets the timer for the rest of the idle time, or disarms it.
func (w *idleWatch) rearm() {
	passive, _ := w.d.passiveWanted()
	idle, free := w.d.sess.idle.idleFor(w.d.clock.Now())
	if !passive || !free {
		w.t.Stop()
		w.c = nil
		return
	}
	w.t.Reset(max(0, w.d.passiveIdle()-idle))
	w.c = w.t.C()
}

// due says, when the timer fired, whether to go passive now: passive,
// idle long enough, and listening (opened again here if it could not be).
// Otherwise the timer is armed again.
func (w *idleWatch) due() bool {
	passive, _ := w.d.passiveWanted()
	idle, free := w.d.sess.idle.idleFor(w.d.clock.Now())
	if passive && free && idle >= w.d.passiveIdle() {
		if w.d.syncPassive() != nil {
			return true
		}
		w.d.sess.idle.restart(w.d.clock.Now()) // try again one idle time later
	}
	w.rearm()
	return false
}

// goPassive tells the coordinator the peer goes passive and ends the
// session: PeerUp{passive}, its side of the stream closed, then a bounded
// wait for the coordinator to close its own (readErr), so the message is
// not lost in a reset.
func (d *Daemon) goPassive(ctx context.Context, ms *frame.Stream, readErr <-chan error) error {
	ln := d.listener()
	if ln == nil {
		return nil
	}
	// A command accepted while connected is stale: drop it, so only one
	// sent after this wakes the peer.
	for drained := false; !drained; {
		select {
		case <-ln.Woken():
		default:
			drained = true
		}
	}
	tcp, _ := ln.Addr()
	port := tcp.(*net.TCPAddr).Port
	if err := ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Passive{Passive: &pb.PeerPassive{Port: uint32(port)}}}, sendTimeout); err != nil {
		return catalog.Errorf(catalog.CodeCoordinatorDown, "(going passive: %w)", err)
	}
	_ = ms.Stream().CloseWrite()
	t := time.NewTimer(passiveCloseWait)
	defer t.Stop()
	select {
	case <-readErr:
	case <-t.C:
	case <-ctx.Done():
	}
	d.log.Info("passive: idle, listening for a wake command", "port", port, "idle", d.passiveIdle())
	return errWentPassive
}

// passiveWait is the peer while passive: no connection, only the listener.
// It returns true when it should connect again (a wake command was
// accepted, the listener is gone, a session channel is open — admitted on a
// grant still in force, it must be reported —, or the offline limit passed:
// Run's loop then uninstalls), false when ctx ended.
func (d *Daemon) passiveWait(ctx context.Context) bool {
	ln := d.listener()
	if ln == nil || d.sessionOpen() {
		return true // a channel opened while it said goodbye: stay
	}
	d.dropConnections()
	defer d.keepConnections()
	now := d.clock.Now()
	d.updateState(func(s *State) { s.Connected, s.Listening, s.PassiveSince = false, true, now.UTC() })
	defer d.updateState(func(s *State) { s.Listening = false })
	// The offline limit runs from the last contact, as for any peer.
	limit := func() time.Duration {
		s := d.snapshot()
		return d.config.offlineLimit(s) - d.clock.Now().Sub(s.LastContact)
	}
	t := d.clock.NewTimer(limit())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case body := <-ln.Woken():
			d.log.Info("woken: connecting", "nonce", body.GetNonce())
			return true
		case <-d.sess.idle.changes():
			if d.sessionOpen() {
				d.log.Info("a session channel opened while passive: connecting")
				return true
			}
		case <-t.C():
			if UninstallReason(d.config, d.snapshot(), d.clock.Now()) != "" {
				return true
			}
			t.Reset(limit())
		}
	}
}

// sessionOpen reports whether an admitted session channel is open.
func (d *Daemon) sessionOpen() bool {
	_, free := d.sess.idle.idleFor(d.clock.Now())
	return !free
}

// dropConnections ends what a passive peer holds: relay reservations, the
// jumpoint tunnels and every connection.
func (d *Daemon) dropConnections() {
	if d.jumpoints != nil {
		d.jumpoints.quiet.Store(true) // these closes are not jumpoints lost
	} else if err := d.reserver.SetRelays(nil); err != nil {
		d.log.Warn("dropping relays", "error", err)
	}
	for _, id := range d.host.Network().Peers() {
		_ = d.host.Network().ClosePeer(id)
	}
}

// keepConnections undoes dropConnections' marks; the relays come back with
// the next welcome.
func (d *Daemon) keepConnections() {
	if d.jumpoints != nil {
		d.jumpoints.quiet.Store(false)
	}
}
