package coordinator

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

const logPeer = "peer"

// admit passes a (re)connecting peer through the site's global connection
// rate (a token bucket of this coordinator's share of connection-rate per
// second, one second of burst; siterate.go).
// It returns how long the peer must wait, 0 when admitted. The rate paces
// real traffic, so it runs on the wall clock (lifecycle times use the
// injected one).
func (s *Service) admit(id peer.ID) time.Duration { return s.admitAt(id, time.Now()) }

// Admission tickets. A peer told to retry holds a turn booked at the rate:
// when it comes back at that turn (it adds up to a second of jitter, and
// may wait in the handshake gate's queue), it is admitted without another
// token. Without them a storm above connection-rate retried every few
// hundred milliseconds, each retry a full handshake (≈ 2.6 ms of the
// coordinator's CPU on 2 cores), and 2,000 peers at the default 50/s spent
// more CPU on being told to wait than on being admitted.
const (
	// ticketEarly is how early a booked peer may come back.
	ticketEarly = 50 * time.Millisecond
	// ticketGrace is how late it may come back and still use its turn.
	ticketGrace = 30 * time.Second
)

func (s *Service) admitAt(id peer.ID, now time.Time) time.Duration {
	if s.admissionRate < 0 {
		return 0
	}
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	// Under the lock: the limiter must not see time go backwards (a
	// reservation at an earlier time credits that interval again, and a
	// busy coordinator would admit several times the rate).
	if now.Before(s.admitLast) {
		now = s.admitLast
	}
	s.admitLast = now
	limit := rate.Limit(s.admissionRate)
	if limit == 0 {
		limit = rate.Limit(s.settings().GetConnectionRate())
	}
	limit = s.rateShare(limit) // the site's rate, shared by its coordinators (siterate.go)
	if s.limiter == nil {
		s.limiter = rate.NewLimiter(limit, max(1, int(limit)))
		s.tickets = make(map[peer.ID]time.Time)
	} else if s.limiter.Limit() != limit {
		s.limiter.SetLimitAt(now, limit)
		s.limiter.SetBurstAt(now, max(1, int(limit)))
	}
	if now.After(s.ticketsSwept.Add(time.Second)) {
		// Turns never used (the peer went away): at most one a peer.
		s.ticketsSwept = now
		for other, at := range s.tickets {
			if now.After(at.Add(ticketGrace)) {
				delete(s.tickets, other)
			}
		}
	}
	if at, ok := s.tickets[id]; ok {
		switch {
		case now.Before(at.Add(-ticketEarly)):
			return at.Sub(now) // early: the same turn, no new one
		case now.Before(at.Add(ticketGrace)):
			delete(s.tickets, id)
			return 0 // its turn
		}
		delete(s.tickets, id) // too late: its turn went unused; a new one
	}
	d := s.limiter.ReserveN(now, 1).DelayFrom(now)
	if d <= 0 {
		return 0
	}
	s.tickets[id] = now.Add(d)
	return d
}

// registerPeer records a hello: a known peer updates its facts, an unknown
// one enrolls with its installer key. Unless the record is marked deleted
// (or a tombstone), sess becomes the peer's session once the record is
// committed, and the session it replaced is returned; on a shared store
// the peer's presence is written in the same transaction (peerStore.write).
//
// A reconnection whose hello changes nothing but the last contact writes
// nothing (a reconnect storm made one synced commit per peer for it): the
// contact is kept in memory, as a session's statistics are. Nothing
// acknowledged is lost that way: the last contact is no one's
// acknowledged write, and the store's copy of an online peer's lags as it
// did during any session — written when the session ends (peerGone), at
// shutdown (recordOffline) and by the sweep once it is lastSeenFlush old
// (Sweep), so after a kill -9 it is at most lastSeenFlush + SweepInterval
// behind, whether the peer reconnected or not.
func (s *Service) registerPeer(id peer.ID, hello *pb.PeerHello, observed string, now time.Time, sess *peerSession) (*pb.Peer, *peerSession, error) {
	if rec, _ := s.peers.get(id); rec == nil {
		if t := s.peers.tombstone(id); t != nil {
			return t, nil, nil // removed: told to uninstall, never enrolled again
		}
		return s.enroll(id, hello, observed, now, sess)
	}
	if rec, old, ok := s.peers.reconnect(id, func(rec *pb.Peer) bool { return sameFacts(rec, hello, observed) }, now, sess); ok {
		return rec, old, nil
	}
	return s.peers.write(id, stored(id, func(rec *pb.Peer) error { updateFacts(rec, hello, observed, now); return nil }), sess)
}

func updateFacts(rec *pb.Peer, hello *pb.PeerHello, observed string, now time.Time) {
	rec.Info = hello.GetInfo()
	rec.PublicAddr = observed
	rec.Disabled = hello.GetDisabled()
	rec.LastSeenUnix = now.Unix()
	rec.UninstalledUnix = 0
	rec.PassiveUnix = 0 // connected: no longer passive (until it says so again)
}

// sameFacts reports whether updateFacts would change nothing of rec but
// its last contact.
func sameFacts(rec *pb.Peer, hello *pb.PeerHello, observed string) bool {
	return rec.GetDeletedUnix() == 0 && rec.GetPublicAddr() == observed && rec.GetDisabled() == hello.GetDisabled() &&
		rec.GetUninstalledUnix() == 0 && rec.GetPassiveUnix() == 0 && proto.Equal(rec.GetInfo(), hello.GetInfo())
}

// enroll admits a new peer: a valid, unrevoked installer key of this site,
// overrides only where the installer allows them, within the build limits.
func (s *Service) enroll(id peer.ID, hello *pb.PeerHello, observed string, now time.Time, sess *peerSession) (*pb.Peer, *peerSession, error) {
	in, err := s.enrollKey(hello.GetInstallerKey())
	if err != nil {
		return nil, nil, err
	}
	settings, err := applyOverrides(in.GetBody(), hello)
	if err != nil {
		return nil, nil, err
	}
	// Where the site has build limits, enrollments are serialised so that
	// two cannot both pass them. Without limits nothing is checked across
	// enrollments, and they commit side by side: Badger syncs the commits
	// that wait together in one write (held under the lock, every
	// enrollment synced on its own). An enrollment that read the settings
	// before a limit was set is one that began before it, as under the lock.
	if st := s.settings(); st.GetMaxPeers() != 0 || st.GetMaxActivePeers() != 0 {
		s.enrollMu.Lock()
		defer s.enrollMu.Unlock()
		if err := checkBuildLimits(s.peers, st, settings); err != nil {
			return nil, nil, err
		}
	}
	rec := &pb.Peer{Id: []byte(id), InstallerId: in.GetId(), Settings: settings, InstalledUnix: now.Unix()}
	for _, j := range in.GetBody().GetJumpoints() {
		rec.Jumpoints = append(rec.Jumpoints, j.GetId()) // the jumpoints' ACLs admit it from now on
	}
	updateFacts(rec, hello, observed, now)
	if rec.Settings.GetName() == "" {
		rec.Settings.Name = truncateRunes(hello.GetInfo().GetHostname(), MaxPeerNameLength)
	}
	_, old, err := s.peers.write(id, func(*Tx) (*pb.Peer, error) { return rec, nil }, sess)
	if err != nil {
		return nil, nil, err
	}
	s.log.Info("peer enrolled", logPeer, id, "installer", in.GetId(), "group", settings.GetGroup())
	return rec, old, nil
}

// applyOverrides merges the host's install-time choices into the
// installer's defaults, refusing fields the installer does not let it set.
func applyOverrides(body *pb.InstallerKeyBody, hello *pb.PeerHello) (*pb.InstallerDefaults, error) {
	d := proto.CloneOf(body.GetDefaults())
	if d == nil {
		d = &pb.InstallerDefaults{}
	}
	fields := installerkey.Field(hello.GetOverrideFields())
	if denied := fields &^ installerkey.Field(body.GetOverridable()); denied != 0 {
		return nil, catalog.Errorf(catalog.CodeOverrideNotAllowed, "(%v)", denied.Names())
	}
	if err := applyFields(d, hello.GetOverrides(), fields); err != nil {
		return nil, err
	}
	return d, nil
}

// checkBuildLimits refuses an enrollment with settings that would pass the
// site's max-peers or max-active-peers (st), counted over peers.
func checkBuildLimits(peers *peerStore, st *pb.Settings, settings *pb.InstallerDefaults) error {
	total, active := peers.counts(st.GetDefaultConnectionType())
	if st.GetMaxPeers() > 0 && total >= int(st.GetMaxPeers()) {
		return catalog.Errorf(catalog.CodeBuildLimitTotal, "(%d of %d)", total, st.GetMaxPeers())
	}
	if !isPassiveType(settings.GetConnectionType(), st.GetDefaultConnectionType()) &&
		st.GetMaxActivePeers() > 0 && active >= int(st.GetMaxActivePeers()) {
		return catalog.Errorf(catalog.CodeBuildLimitActive, "(%d of %d)", active, st.GetMaxActivePeers())
	}
	return nil
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

func (s *Service) setPeerDisabled(id peer.ID, disabled bool) {
	_, err := s.peers.modify(id, func(rec *pb.Peer) error { rec.Disabled = disabled; return nil })
	if err != nil {
		s.log.Warn("recording peer state", logPeer, id, logError, err)
	}
}

// peerUninstalled handles the host's goodbye: marked and kept, or removed,
// per the site's uninstalled-behavior.
func (s *Service) peerUninstalled(id peer.ID, reason string, now time.Time) {
	if s.settings().GetUninstalledBehavior() == pb.UninstalledBehavior_UNINSTALLED_BEHAVIOR_REMOVE {
		s.peers.forget(id)
	} else if _, err := s.peers.modify(id, func(rec *pb.Peer) error { rec.UninstalledUnix = now.Unix(); return nil }); err != nil {
		s.log.Warn("recording uninstall", logPeer, id, logError, err)
	}
	s.log.Info("peer uninstalled by its host", logPeer, id, "reason", reason)
}

// Sweep applies the lifecycle horizons at now: offline peers past their
// offline limit (max-offline-minutes, ephemeral, or the site's delete
// horizon) are deleted — they uninstall themselves on their side — and the
// last contact of online peers is written to the store. The coordinator
// runs it every SweepInterval; tests call it after moving the clock.
func (s *Service) Sweep(now time.Time) (deleted int) {
	st := s.settings()
	var gone []*pb.Peer
	var flush []peerSnapshot
	for _, p := range s.peers.snapshot() {
		switch {
		case !p.online && p.rec.GetUninstalledUnix() == 0 && now.Sub(p.lastSeen) >= offlineLimit(p.rec, st):
			gone = append(gone, p.rec)
		case p.held && now.Sub(time.Unix(p.rec.GetLastSeenUnix(), 0)) >= lastSeenFlush: // its holder writes it
			flush = append(flush, p)
		}
	}
	for _, rec := range gone {
		if rec.GetDeletedUnix() != 0 {
			s.peers.bury(rec, "", now) // removed with rm: keep it removed
		} else {
			s.peers.forget(peer.ID(rec.GetId()))
		}
		s.log.Info("peer deleted after its offline horizon", logPeer, peer.ID(rec.GetId()))
	}
	s.flushLastSeen(flush, now)
	s.sweepTombstones(now)
	s.sweepWakes(now)
	s.jumps.sweepBuckets()
	return len(gone)
}

// lastSeenFlush bounds how stale an online peer's stored last contact gets.
const lastSeenFlush = 10 * time.Minute

// SweepInterval is how often the coordinator applies the horizons.
const SweepInterval = time.Minute

func (s *Service) flushLastSeen(peers []peerSnapshot, now time.Time) {
	for _, p := range peers {
		id := peer.ID(p.rec.GetId())
		if _, err := s.peers.modify(id, func(rec *pb.Peer) error {
			rec.LastSeenUnix = now.Unix()
			if p.stats != nil {
				rec.Stats = p.stats
			}
			return nil
		}); err != nil {
			s.log.Warn("recording last contact", logPeer, id, logError, err)
		}
	}
}
