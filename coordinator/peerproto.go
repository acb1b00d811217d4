package coordinator

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// Timing of the peer protocol.
const (
	helloTimeout = 30 * time.Second
	writeTimeout = 10 * time.Second
	// A peer that sends nothing for missedReports statistics intervals
	// (plus slack) is considered gone, and its stream is closed.
	missedReports = 3
	reportSlack   = 10 * time.Second
	// closingRetryAfter is what a peer whose stream comes while the
	// coordinator closes is told to wait (retryWhileClosing): about a
	// restart's time, after which its dial is refused (cheap, and counted
	// as a coordinator restarting: peer.Restarting) or served.
	closingRetryAfter = time.Second
	// closingLinger bounds how long such a stream is read for the hello
	// and drained: Close does not wait for it.
	closingLinger = time.Second
)

// ServePeer runs one peer's stream: hello, admission, registration,
// welcome, then statistics until the stream ends or goes quiet. A host that
// is not enrolled yet is a stranger until its welcome: its hello is read
// within the stranger limits, and its installer key is checked before the
// hello is charged to the connection rate, so hellos without a valid key
// cannot use up the rate that real peers need (strangers.go).
//
// ServePeer returns once the peer is welcomed (or refused); the session's
// statistics are then read on a goroutine of its own, whose stack holds
// none of the registration's frames (peerwait.go), and done runs when the
// stream has ended and the peer is offline. ctx is the coordinator's life;
// a session outlives it until the host closes its stream (readPeer).
func (s *Service) ServePeer(ctx context.Context, st network.Stream, done func()) {
	reading := false
	defer func() {
		if !reading {
			done()
		}
	}()
	ws := &waitStream{Stream: st}
	ms := frame.NewStream(ws, peerproto.MaxMessage)
	remote := st.Conn().RemotePeer()
	hello, member, ok := s.readHello(ms, remote)
	if !ok {
		ms.Reset()
		return
	}
	if !member {
		if err := s.checkHelloKeyCached(remote, hello); err != nil {
			s.refuse(ms, remote, err, s.resources.StrangerTimeout)
			return
		}
	}
	if wait := s.admit(remote); wait > 0 {
		s.retries.Add(1)
		_ = ms.Write(&pb.PeerDown{Body: &pb.PeerDown_Retry{Retry: &pb.PeerRetry{AfterMillis: wait.Milliseconds() + 1}}}, writeTimeout)
		_ = st.CloseWrite()
		drain(ms)
		return
	}
	now := s.clock.Now()
	observed := observedIP(st)
	sess := newPeerSession(remote, ms)
	rec, old, err := s.registerPeer(remote, hello, observed, now, sess) // attaches sess (enroll.go)
	if err != nil {
		s.refuse(ms, remote, err, helloTimeout)
		return
	}
	if rec.GetDeletedUnix() != 0 { // not attached
		s.tellUninstall(sess, "deleted by "+rec.GetDeletedBy())
		s.peers.bury(rec, "", now)
		drain(ms)
		return
	}
	ms.SetMaxMessage(peerproto.MaxMessage) // a member now
	if old != nil {
		old.close()
	}
	if err := sess.send(&pb.PeerDown{Body: &pb.PeerDown_Welcome{Welcome: s.welcome(rec, observed)}}); err != nil {
		s.peerGone(sess)
		return
	}
	s.startPushes(sess) // what was pushed since attach, then the rest (push.go)
	s.log.Info("peer online", logPeer, remote, "name", rec.GetSettings().GetName())
	reading = true
	go func() {
		defer done()
		s.readPeer(sess, ws)
	}()
}

// retryWhileClosing answers a peer stream that came while the coordinator
// closes (its handlers no longer start) with a retry-after, where it reset
// the stream: a peer counts a reset as a failed attempt and doubles its
// backoff, while the coordinator was only restarting. Such streams came
// from peers whose session ended during Close and who dialled again before
// the host stopped listening (BenchmarkReconnectStorm: 1 and 29 failed
// attempts, "stream reset (remote)", in 2 of 6 quiet runs; the coordinator
// counted them as PeerEnds.Closing). The hello is read (at most
// closingLinger) so that the answer is not a reply to half a message.
func (s *Service) retryWhileClosing(st network.Stream) {
	s.ends.closing.Add(1)
	ms := frame.NewStream(st, peerproto.MaxMessage)
	var up pb.PeerUp
	if ms.Read(&up, closingLinger) != nil {
		ms.Reset()
		return
	}
	retry := &pb.PeerRetry{AfterMillis: closingRetryAfter.Milliseconds()}
	_ = ms.Write(&pb.PeerDown{Body: &pb.PeerDown_Retry{Retry: retry}}, closingLinger)
	_ = st.CloseWrite()
	drainWithin(ms, closingLinger)
}

// readPeer handles the peer's messages until the stream ends. Between
// messages it waits in ws.await, shallow (peerwait.go). It does not end
// the session when ctx ends: a closing coordinator keeps its sessions
// until its host closes them all at once, when it no longer listens, so
// their peers' next dials are refused (a restart: peer.Restarting) rather
// than handshaken by a coordinator that is going away; ending each session
// at its first message after ctx's end had its peer dial again during
// Close.
func (s *Service) readPeer(sess *peerSession, ws *waitStream) {
	defer s.peerGone(sess)
	for {
		if sess.ms.Buffered() == 0 && ws.await(s.reportTimeout()) != nil {
			return
		}
		var up pb.PeerUp
		if err := sess.ms.Read(&up, s.reportTimeout()); err != nil {
			return
		}
		now := s.clock.Now()
		switch b := up.GetBody().(type) {
		case *pb.PeerUp_Stats:
			b.Stats.Nat = cleanNAT(b.Stats.GetNat()) // the peer's word (natsearch.go)
			s.peers.touch(sess.id, now, b.Stats)
		case *pb.PeerUp_State:
			s.peers.touch(sess.id, now, nil)
			s.setPeerDisabled(sess.id, b.State.GetDisabled())
		case *pb.PeerUp_Session:
			s.peers.touch(sess.id, now, nil)
			s.sessionEvent(sess.id, b.Session)
		case *pb.PeerUp_Goodbye:
			s.peerUninstalled(sess.id, b.Goodbye.GetReason(), now)
			return
		case *pb.PeerUp_Passive:
			// It closes its stream after this; so do we. The mark is the
			// stream's own peer's: the message names no one (wake.go).
			s.peerPassive(sess, now)
			return
		default:
			s.peers.touch(sess.id, now, nil)
		}
	}
}

func (s *Service) reportTimeout() time.Duration {
	return missedReports*time.Duration(s.settings().GetStatsIntervalSeconds())*time.Second + reportSlack
}

// peerGone marks the peer offline (if sess is still its session) and
// records its last contact durably.
func (s *Service) peerGone(sess *peerSession) {
	sess.close()
	now := s.clock.Now()
	if !s.peers.detach(sess.id, sess, now) {
		return
	}
	s.jumps.peerGone(sess.id)
	if s.closing.Load() {
		// recordOffline wrote every online peer's last contact in batches.
		return
	}
	var stats *pb.PeerStats
	if cur, _ := s.peers.get(sess.id); cur != nil {
		stats = cur.GetStats()
	}
	_, err := s.peers.modify(sess.id, func(rec *pb.Peer) error {
		rec.LastSeenUnix = now.Unix()
		if stats != nil {
			rec.Stats = stats
		}
		return nil
	})
	if err != nil && catalog.CodeOf(err) != catalog.CodePeerNotFound { // removed meanwhile: nothing to record
		s.log.Warn("recording peer offline", logPeer, sess.id, logError, err)
	}
	s.log.Info("peer offline", logPeer, sess.id)
}

// recordOffline writes the last contact (and statistics) of every online
// peer in a few transactions, before the coordinator closes their
// connections: one synced commit per peer as each session ended made a
// coordinator with 2,000 online peers take 3.65 s to stop, most of its
// restart. Sessions that end after it write nothing more.
func (s *Service) recordOffline() {
	s.closing.Store(true)
	now := s.clock.Now()
	var ids []peer.ID
	stats := map[peer.ID]*pb.PeerStats{}
	for _, sess := range s.peers.sessions() {
		ids = append(ids, sess.id)
		if cur, _ := s.peers.get(sess.id); cur.GetStats() != nil {
			stats[sess.id] = cur.GetStats()
		}
	}
	n, err := s.peers.modifyMany(ids, func(rec *pb.Peer) {
		rec.LastSeenUnix = now.Unix()
		if st := stats[peer.ID(rec.GetId())]; st != nil {
			rec.Stats = st
		}
	})
	if err != nil {
		s.log.Warn("recording online peers' last contact at shutdown", "recorded", n, "of", len(ids), logError, err)
	}
}

func (s *Service) welcome(rec *pb.Peer, observed string) *pb.PeerWelcome {
	st := s.settings()
	if rec.GetSettings().GetConnectionType() == pb.ConnectionType_CONNECTION_TYPE_UNSPECIFIED {
		// An installer made before connection types: the site's default
		// is the peer's effective type (it decides whether it goes passive).
		rec = proto.CloneOf(rec)
		if rec.Settings == nil {
			rec.Settings = &pb.InstallerDefaults{}
		}
		rec.Settings.ConnectionType = st.GetDefaultConnectionType()
	}
	return &pb.PeerWelcome{Peer: rec, DeleteAfterDays: st.GetDeleteAfterDays(), StatsIntervalSeconds: st.GetStatsIntervalSeconds(),
		RestrictLocalUninstall: st.GetRestrictLocalUninstall(), ObservedAddr: observed, Relays: encodeAddrs(s.relayAddrs()),
		LocalPolicy: s.localPolicy(peer.ID(rec.GetId()), st), PassivePort: st.GetPassivePort(), PassiveIdleSeconds: st.GetPassiveIdleSeconds(),
		NatPredictionOff: !st.GetNatPrediction(), NatProbingOff: !st.GetNatProbing(),
		BulkOff: !st.GetBulkConnections(), SiteAddrs: encodeAddrs(s.coordinatorAddrs())}
}

// tellUninstall orders the peer to uninstall and closes our side for
// writing. The stream is not reset here: a reset may discard the order
// before it is delivered (QUIC cancels unsent data); the peer ends the
// stream once it has read it.
func (s *Service) tellUninstall(sess *peerSession, reason string) {
	_ = sess.send(&pb.PeerDown{Body: &pb.PeerDown_Uninstall{Uninstall: &pb.PeerUninstall{Reason: reason}}})
	_ = sess.ms.Stream().CloseWrite()
}

// refuse tells the peer why its hello was refused, then drains the stream
// for at most linger per message.
func (s *Service) refuse(ms *frame.Stream, remote peer.ID, err error, linger time.Duration) {
	s.log.Info("peer refused", logRemote, remote, logCode, catalog.CodeOf(err), logError, err)
	_ = ms.Write(&pb.PeerDown{Body: &pb.PeerDown_Error{Error: catalog.ErrorToPB(err)}}, writeTimeout)
	_ = ms.Stream().CloseWrite()
	drainWithin(ms, linger)
}

// drain waits (bounded) for the peer to end a stream we are done with.
func drain(ms *frame.Stream) { drainWithin(ms, helloTimeout) }

func drainWithin(ms *frame.Stream, timeout time.Duration) {
	for i := 0; i < 4; i++ {
		var up pb.PeerUp
		if ms.Read(&up, timeout) != nil {
			break
		}
	}
	ms.Reset()
}

// observedIP is the remote's IP as this coordinator sees it.
func observedIP(st network.Stream) string {
	ip, err := manet.ToIP(st.Conn().RemoteMultiaddr())
	if err != nil {
		return ""
	}
	return ip.String()
}

// settings returns the current site settings. Peer streams read them on
// every message, so they are cached; settings_set is the only writer and
// refreshes the cache after its commit. Callers must not modify the result.
func (s *Service) settings() *pb.Settings {
	if st := s.settingsCache.Load(); st != nil {
		return st
	}
	return s.reloadSettings()
}

// reloadSettings reads the settings from the store into the cache
// (defaults on a read error, which the next write will surface).
func (s *Service) reloadSettings() *pb.Settings {
	var st *pb.Settings
	if err := s.store.View(func(tx *Tx) (err error) { st, err = tx.Settings(); return err }); err != nil {
		return DefaultSettings()
	}
	s.settingsCache.Store(st)
	return st
}
