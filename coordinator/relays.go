package coordinator

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Relays are enrolled like users (role relay, by invite) so they
// authenticate the same way; they may only refresh the relay ACL, which
// also reports where they listen. The coordinator hands the live relays to
// peers (to keep reservations) and consoles (to reach peers through them).
//
// A relay fetches its ACL from one coordinator at a time. On a site of
// several coordinators (etcd) the one it fetched from writes what it
// heard to the store, and every coordinator follows it by watch, so a
// peer held by B is handed a relay that talks only to A:
//
//	rl/<relay peer id> → relayRecord (JSON: addresses, when, heard by)
//
// The record is not held by the coordinator's lease: a relay outlives the
// coordinator it last talked to (it fetches from another within one
// period), and dropping it with that coordinator's lease would make every
// other coordinator tell its peers the relay is gone, in the middle of a
// failover. Its liveness is its time instead, as in memory: a relay not
// heard from for three periods is no longer handed out, whichever
// coordinator heard it last. The key is the caller's authenticated peer ID,
// never a field of its request; a relay's addresses are cut to
// maxRelayAddrs; one coordinator writes a relay's record at most every
// relayRewrite unless its addresses changed, however often it fetches.
// Records that lapsed a day ago are deleted when a coordinator starts.

// RelayRefresh is how often relays fetch the ACL; a relay that has not
// refreshed for three periods is no longer handed out.
const RelayRefresh = 30 * time.Second

const (
	relaysPrefix = "rl/"
	// maxRelayAddrs bounds the addresses of one relay that are kept and
	// handed to every peer and console.
	maxRelayAddrs = 16
	// relayRewrite is how often a coordinator writes the record of a relay
	// fetching from it with unchanged addresses: well within the three
	// periods the record lives.
	relayRewrite = RelayRefresh / 3
	// relaySweep is how long after it lapsed a relay's record is deleted.
	relaySweep = 24 * time.Hour
)

// relayRecord is the value of rl/<relay peer id>.
type relayRecord struct {
	Addrs []string `json:"addrs"`
	// At is when the relay last fetched (unix milliseconds on the clock
	// of the coordinator that heard it, By).
	At int64  `json:"at"`
	By string `json:"by"`
}

// relayBook remembers where each relay listens and when it last refreshed.
type relayBook struct {
	mu     sync.Mutex
	relays map[peer.ID]relaySeen
}

type relaySeen struct {
	addrs []ma.Multiaddr
	at    time.Time
	// written is when this coordinator last wrote the relay's record.
	written time.Time
}

// seen records that the relay fetched at `at` (heard: from this
// coordinator, at is now; else a record of the store) and reports whether it is new, came back or moved
// (peers must be told), and, for a fetch heard here, whether its record
// is due to be written. An older sighting than the one known changes
// nothing.
func (b *relayBook) seen(id peer.ID, addrs []ma.Multiaddr, at, now time.Time, heard bool) (fresh, write bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.relays == nil {
		b.relays = map[peer.ID]relaySeen{}
	}
	old, known := b.relays[id]
	if known && at.Before(old.at) {
		return false, false
	}
	moved := !slices.EqualFunc(old.addrs, addrs, ma.Multiaddr.Equal)
	fresh = now.Sub(at) <= 3*RelayRefresh && (!known || now.Sub(old.at) > 3*RelayRefresh || moved)
	cur := relaySeen{addrs: addrs, at: at, written: old.written}
	if heard && (moved || now.Sub(old.written) >= relayRewrite) {
		write, cur.written = true, now
	}
	b.relays[id] = cur
	return fresh, write
}

// forget drops a relay whose record was deleted.
func (b *relayBook) forget(id peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.relays, id)
}

// live returns the relays that refreshed recently, as /p2p/ addresses.
func (b *relayBook) live(now time.Time) []ma.Multiaddr {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ma.Multiaddr
	for id, r := range b.relays {
		if d := now.Sub(r.at); d > 3*RelayRefresh || d < -3*RelayRefresh {
			continue
		}
		full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: id, Addrs: r.addrs})
		if err == nil {
			out = append(out, full...)
		}
	}
	return out
}

// publishRelay writes the record of a relay heard here (etcd). A failure
// is logged: the relay is handed out here, and elsewhere once a write
// succeeds.
func (s *Service) publishRelay(id peer.ID, addrs []ma.Multiaddr, at time.Time) {
	rec := relayRecord{At: at.UnixMilli(), By: s.store.Instance()}
	for _, a := range addrs {
		rec.Addrs = append(rec.Addrs, a.String())
	}
	v, err := json.Marshal(rec)
	if err == nil {
		err = s.store.Update(func(tx *Tx) error { return tx.kv.set([]byte(relaysPrefix+id.String()), v) })
	}
	if err != nil {
		s.log.Warn("writing a relay's record for the site's other coordinators", logPeer, id, logError, err)
	}
}

// readRelays loads rl/ at the transaction's revision, and returns the keys
// of the records that lapsed long ago.
func (s *Service) readRelays(tx *Tx) (stale [][]byte, err error) {
	now := s.clock.Now()
	var b watchBatch
	err = tx.kv.scan([]byte(relaysPrefix), nil, false, func(k, v []byte) (bool, error) {
		b.events = append(b.events, storeEvent{key: string(k), value: bytes.Clone(v)})
		if lapsedLongAgo(v, now) && len(stale) < modifyBatch {
			stale = append(stale, bytes.Clone(k))
		}
		return true, nil
	})
	if err == nil {
		s.followRelays(b)
	}
	return stale, err
}

// sweepRelays deletes relay records that lapsed long ago (readRelays).
func (s *Service) sweepRelays(stale [][]byte) {
	if len(stale) == 0 {
		return
	}
	now := s.clock.Now()
	err := s.store.Update(func(tx *Tx) error {
		for _, k := range stale {
			// Read again: a relay back meanwhile keeps its new record.
			v, ok, err := tx.kv.get(k)
			if err == nil && ok && lapsedLongAgo(v, now) {
				err = tx.kv.delete(k)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("deleting relays' records that lapsed long ago", logError, err)
	}
}

// lapsedLongAgo: the relay record v stopped being handed out relaySweep
// before now.
func lapsedLongAgo(v []byte, now time.Time) bool {
	var rec relayRecord
	return json.Unmarshal(v, &rec) == nil && now.Sub(time.UnixMilli(rec.At)) > 3*RelayRefresh+relaySweep
}

// followRelays takes the store's relay records (the watch on rl/, and the
// load at start). A record that does not decode, or names no peer ID, is
// logged and skipped; peers are told of relays new to this coordinator.
func (s *Service) followRelays(b watchBatch) {
	now := s.clock.Now()
	fresh := false
	for _, e := range b.events {
		id, err := peer.Decode(strings.TrimPrefix(e.key, relaysPrefix))
		if err != nil {
			s.log.Warn("a relay record under a key that is not a peer ID: ignored", "key", e.key)
			continue
		}
		if e.value == nil {
			s.relayBook.forget(id)
			continue
		}
		var rec relayRecord
		if err := json.Unmarshal(e.value, &rec); err != nil {
			s.log.Warn("a relay record that does not decode: ignored", "key", e.key, logError, err)
			continue
		}
		var addrs []ma.Multiaddr
		for _, a := range rec.Addrs[:min(len(rec.Addrs), maxRelayAddrs)] {
			if addr, err := ma.NewMultiaddr(a); err == nil {
				addrs = append(addrs, addr)
			}
		}
		if f, _ := s.relayBook.seen(id, addrs, time.UnixMilli(rec.At), now, false); f {
			fresh = true
		}
	}
	if fresh {
		s.pushSettings() // online peers learn of the relay now
	}
}

func (s *Service) dispatchRelay(c *caller, req *pb.Request) (*pb.Response, error) {
	switch b := req.GetBody().(type) {
	case *pb.Request_RelayAcl:
		return s.relayACL(c, b.RelayAcl)
	case *pb.Request_Whoami:
		return s.userShow(c, c.name())
	}
	return nil, catalog.Errorf(catalog.CodePermissionDenied, "(a relay may only fetch the relay ACL)")
}

// relayACL records the relay's addresses and returns the site's members:
// the coordinator, every peer not deleted, every user's keys.
func (s *Service) relayACL(c *caller, r *pb.RelayACLRequest) (*pb.Response, error) {
	now := s.clock.Now().Truncate(time.Millisecond) // as its record keeps it
	addrs := mesh.DecodeAddrs(r.GetAddrs())
	addrs = addrs[:min(len(addrs), maxRelayAddrs)]
	fresh, write := s.relayBook.seen(c.peer, addrs, now, now, true)
	if fresh {
		s.pushSettings() // online peers learn of the relay now
	}
	if write && s.store.shared() {
		s.publishRelay(c.peer, addrs, now)
	}
	members := [][]byte{[]byte(s.siteID)}
	for _, p := range s.peers.snapshot() {
		if p.rec.GetDeletedUnix() == 0 {
			members = append(members, p.rec.GetId())
		}
	}
	err := s.view(func(tx *Tx) error {
		users, err := tx.Users()
		for _, u := range users {
			members = append(members, u.GetPeerIds()...)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// The relays handed out, the caller among them: the relay keeps the
	// others (mesh/member's findsite.go).
	return &pb.Response{Body: &pb.Response_RelayAcl{RelayAcl: &pb.RelayACL{Members: members, RefreshSeconds: int64(RelayRefresh / time.Second),
		Relays: encodeAddrs(s.relayAddrs())}}}, nil
}

// relayAddrs are the relays handed out: configured ones and live enrolled ones.
func (s *Service) relayAddrs() []ma.Multiaddr {
	return append(append([]ma.Multiaddr(nil), s.relays...), s.relayBook.live(s.clock.Now())...)
}

// peerAddrs are where the console may reach a peer: what the coordinator's
// host learned (identify; public addresses only when the peer connects from
// a public one) and the listen addresses the peer reported itself (its LAN
// addresses, for consoles on the same network), within the console's
// scope (addrscope.go: no loopback address to another host).
func (s *Service) peerAddrs(console, id peer.ID) []ma.Multiaddr {
	scope := s.scopeFor(console, id)
	out := scope.filter(s.hostAddrs(id))
	rec, _ := s.peers.get(id)
	for _, a := range scope.filter(mesh.DecodeAddrs(rec.GetInfo().GetListenAddrs())) {
		dup := false
		for _, o := range out {
			if o.Equal(a) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}
