package coordinator

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Following what other coordinators of the site change (etcd; design item
// 5 of issue 16 part 2). Each coordinator pushes to the peers it holds
// (push.go); a change made through another coordinator reaches them here,
// by the store's watch (store.go), so that every online peer of the site
// hears of it whichever coordinator took the change:
//
//   - settings: the settings key changed and differs from this
//     coordinator's cache: the cache is reloaded and every peer it holds
//     gets its settings update (the coordinator that took the change has
//     already reloaded, so its own write comes back equal and pushes
//     nothing twice);
//   - revocations: a coordinator that revokes grants (a user removed, a
//     member leaving a jump group, a session policy or a peer's group or
//     policies changed: revoke.go) pushes PeerRevoke to the peers it holds
//     and publishes the revocation under se/<instance>, a key of its own
//     held by its lease and rewritten at each revocation; every other
//     coordinator pushes it to the peers it holds, stamped on its own
//     timeline (revoke.go), so that it covers every grant that coordinator
//     issued until then. Closed jump windows are not published: every
//     coordinator checks its own peers' windows;
//   - relays: the relays' records (rl/, relays.go), so that every
//     coordinator hands out the relays that fetched from any of them;
//   - peer records of the peers it holds (p/): a peer set or removed
//     through another coordinator. The holder compares the settings of
//     the record with those its welcome or latest update carried
//     (peerSession.sent) and pushes the peer an update built from that
//     record when they differ, so its own writes (last contact,
//     statistics) push nothing;
//     a record marked deleted is buried here and the peer told to
//     uninstall, as the coordinator taking the removal does for a peer it
//     holds. A change that comes while the welcome is on its way is
//     pushed right after it (startPushes).
//
// What is read from the store at every request (users and their keys,
// groups, policies, tombstones, peers' records) needs no following: a
// jump asked of any coordinator after a change committed is checked
// against it. What a revocation must reach is the peers' own memory (the
// grants they hold), and that is what the published revocation carries.
// The delay from a revocation's commit on one coordinator to its push on
// another is the watch's (TestRevocationReachesPeersOfOtherCoordinators
// measures it; docs/etcd.md has the figures).

// siteEventPrefix holds one key per coordinator: se/<instance> → its latest
// published siteEvent (JSON), under its lease.
const siteEventPrefix = "se/"

// siteEvent is what a coordinator publishes for the others to apply.
type siteEvent struct {
	// At is when it was published (unix nanos on the publisher's clock):
	// every put is distinct, and the follower can say how late it is.
	At     int64       `json:"at"`
	Revoke *siteRevoke `json:"revoke,omitempty"`
}

// siteRevoke is a revocation: the technicians' grants (Technicians) or
// every grant (All), on the peers Peers (none: every peer).
type siteRevoke struct {
	Technicians [][]byte `json:"technicians,omitempty"`
	Peers       [][]byte `json:"peers,omitempty"`
	All         bool     `json:"all,omitempty"`
	Reason      string   `json:"reason"`
}

// startFollowing starts the watches above, from the store's present
// revision. Badger has no other writer: nothing to follow.
func (s *Service) startFollowing() error {
	if !s.store.shared() {
		return nil
	}
	s.jumps.shared = &sharedSessions{store: s.store, log: s.log}
	var rev int64
	var stale [][]byte
	err := s.store.View(func(tx *Tx) (err error) {
		if rev, err = tx.revision(); err != nil {
			return err
		}
		stale, err = s.readRelays(tx)
		return err
	})
	if err != nil {
		return err
	}
	s.sweepRelays(stale)
	s.store.watch("settings", rev, s.followSettings)
	s.store.watch(siteEventPrefix, rev, s.followSiteEvents)
	s.store.watch(relaysPrefix, rev, s.followRelays)
	s.store.watch(peersPrefix, rev, s.followPeers)
	s.store.watch(wakeReplyPrefix, rev, s.followWakeReplies)
	s.store.watch(wakeOrderPrefix+s.store.Instance()+"/", rev, s.followWakeOrders)
	return nil
}

// followSettings reloads the settings when they changed and pushes them
// to the peers this coordinator holds.
func (s *Service) followSettings(watchBatch) {
	// A set through this coordinator holds settingsPush from its write to
	// its push: its own write, coming back here, finds it pushed.
	s.settingsPush.Lock()
	defer s.settingsPush.Unlock()
	old := s.pushedSettings
	if old == nil {
		old = s.settingsCache.Load()
	}
	cur := s.reloadSettings()
	if old != nil && proto.Equal(old, cur) {
		return
	}
	s.pushedSettings = cur
	told := s.pushSettings()
	s.log.Info("settings changed through another coordinator: pushed", "peers", told)
}

// followSiteEvents applies the other coordinators' published events.
func (s *Service) followSiteEvents(b watchBatch) {
	self := s.store.Instance()
	for _, e := range b.events {
		from, ok := strings.CutPrefix(e.key, siteEventPrefix)
		if !ok || from == self || e.value == nil {
			continue // its own, or a lease that ended
		}
		var ev siteEvent
		if err := json.Unmarshal(e.value, &ev); err != nil {
			s.log.Warn("a published site event that does not decode: ignored", "key", e.key, logError, err)
			continue
		}
		if r := ev.Revoke; r != nil {
			m := &pb.PeerRevoke{Technicians: r.Technicians, All: r.All, Reason: r.Reason}
			if !m.GetAll() && len(m.GetTechnicians()) == 0 {
				continue // revokes nothing
			}
			sessions := s.peers.sessions()
			if len(r.Peers) > 0 {
				ids := make([]peer.ID, 0, len(r.Peers))
				for _, id := range r.Peers {
					ids = append(ids, peer.ID(id))
				}
				sessions = s.onlineSessions(ids)
			}
			if len(sessions) == 0 {
				continue
			}
			s.log.Info("a revocation made through another coordinator", "from", from,
				"late", time.Duration(s.clock.Now().UnixNano()-ev.At).Round(time.Millisecond))
			s.pushRevoke(sessions, m)
		}
	}
}

// followPeers pushes to the peers it holds what another coordinator
// changed of their records (see above).
func (s *Service) followPeers(b watchBatch) {
	for _, e := range b.events {
		sess := s.peers.session(peer.ID(strings.TrimPrefix(e.key, peersPrefix)))
		if sess == nil || e.value == nil {
			continue // not held here; a record deleted (buried, or uninstalled)
		}
		rec := &pb.Peer{}
		if err := proto.Unmarshal(e.value, rec); err != nil || peer.ID(rec.GetId()) != sess.id {
			continue // the registry logs it (presence.go)
		}
		if rec.GetDeletedUnix() != 0 {
			s.log.Info("a peer removed through another coordinator: told to uninstall", logPeer, sess.id, "by", rec.GetDeletedBy())
			s.peers.bury(rec, "", s.clock.Now())
			s.pushUninstall(sess, "deleted by "+rec.GetDeletedBy())
			continue
		}
		sess.mu.Lock()
		if sess.sent == nil {
			sess.followed = rec // startPushes compares
			sess.mu.Unlock()
			continue
		}
		changed := !sameSettings(sess.sent, rec.GetSettings())
		sess.mu.Unlock()
		if !changed {
			continue
		}
		m := s.followedUpdate(rec)
		if s.push(sess, m) {
			sess.mu.Lock()
			sess.sent = m.GetUpdate().GetPeer().GetSettings()
			sess.mu.Unlock()
		}
	}
}

// followedUpdate is the update of a peer whose record another coordinator
// changed, built from that record: this coordinator's registry follows the
// same changes by a watch of its own (presence.go), which may not have
// taken it yet.
func (s *Service) followedUpdate(rec *pb.Peer) *pb.PeerDown {
	return &pb.PeerDown{Body: &pb.PeerDown_Update{Update: s.welcome(rec, "")}}
}

// sameSettings: a peer sent settings sent needs no update for a record
// whose settings are cur. A record without a connection type (an old
// installer's) was sent the site's default: its type is not compared.
func sameSettings(sent, cur *pb.InstallerDefaults) bool {
	if cur.GetConnectionType() == pb.ConnectionType_CONNECTION_TYPE_UNSPECIFIED && sent != nil {
		c := &pb.InstallerDefaults{}
		if cur != nil {
			c = proto.CloneOf(cur)
		}
		c.ConnectionType, cur = sent.GetConnectionType(), c
	}
	return proto.Equal(sent, cur)
}

// publishRevoke tells the other coordinators of a revocation (etcd). A
// failure is logged: the revocation stands here, and the grants it misses
// on other coordinators' peers open channels for at most
// grant.Limits.OpenFor.
func (s *Service) publishRevoke(r *siteRevoke) {
	if !s.store.shared() {
		return
	}
	v, err := json.Marshal(siteEvent{At: s.clock.Now().UnixNano(), Revoke: r})
	if err == nil {
		err = s.store.Update(func(tx *Tx) error { return tx.kv.setLeased([]byte(siteEventPrefix+s.store.Instance()), v) })
	}
	if err != nil {
		s.log.Error("publishing a revocation to the site's other coordinators", "reason", r.Reason, logError, err)
	}
}

func peerIDBytes(ids []peer.ID) [][]byte {
	out := make([][]byte, 0, len(ids))
	for _, id := range ids {
		out = append(out, []byte(id))
	}
	return out
}
