package coordinator

import (
	"cmp"
	"encoding/json"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// The site's members: every coordinator process serving the site, each
// under an instance name of its own (`coordinator run --instance`, the
// hostname by default). On etcd each member keeps c/<instance> under its
// lease (store_etcd_lease.go), and every member follows c/ by watch; on
// Badger the coordinator is the only member.
//
// For the rest of the service: members() lists the live members and
// memberAddrs() is every address the site's coordinators serve at (this
// coordinator's first), for keys, logins and pushes that should name
// every coordinator; onMembersChanged(fn) hears of joins and departures.

// memberRecord is the value of c/<instance>: JSON, so that `etcdctl get
// --prefix /jumpmesh/<site>/c/` shows an operator who serves the site.
type memberRecord struct {
	Instance string `json:"instance"`
	// Addrs are the addresses it serves peers and consoles at (its
	// advertised addresses, without /p2p/: every member has the site's
	// peer ID).
	Addrs   []string `json:"addrs,omitempty"`
	Started int64    `json:"started"` // unix seconds
	Version string   `json:"version,omitempty"`
	// Process says where it runs (pid, host, data directory).
	Process string `json:"process,omitempty"`
}

// member is one live coordinator of the site as members() reports it.
type member struct {
	Instance string
	Addrs    []ma.Multiaddr
	Started  time.Time
	Version  string
	// Self is this coordinator.
	Self bool
}

// maxInstanceLen bounds an instance name (a DNS label's length).
const maxInstanceLen = 63

// ValidInstance checks an instance name: [a-z0-9-], 1 to 63 characters,
// not starting or ending with "-".
func ValidInstance(name string) error {
	ok := name != "" && len(name) <= maxInstanceLen && name[0] != '-' && name[len(name)-1] != '-'
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			ok = false
		}
	}
	if !ok {
		return catalog.Errorf(catalog.CodeInvalidArgument, "(instance %q: use 1-%d of a-z, 0-9 and -, not at either end)", name, maxInstanceLen)
	}
	return nil
}

// DefaultInstance is the instance name of a coordinator not given one: its
// host name, lower-cased, with anything but a-z, 0-9 and - made "-" (and
// "coordinator" if nothing is left).
func DefaultInstance() string {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(strings.ToLower(host), ".")
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	name := strings.Trim(string(b[:min(len(b), maxInstanceLen)]), "-")
	if name == "" {
		return "coordinator"
	}
	return name
}

// buildVersion is the module version and commit this binary was built from.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// memberView is this coordinator's view of c/, kept by a watch.
type memberView struct {
	self string
	own  func() []ma.Multiaddr
	log  func(msg string, args ...any)

	mu     sync.RWMutex
	others map[string]memberRecord // by instance, never self
	// changed run after every change of the other members (ha-site's
	// share of the connection rate).
	changed []func()
}

// startMembers announces this coordinator's addresses in its member
// record and starts following the others.
func (s *Service) startMembers() error {
	v := &memberView{self: s.store.Instance(), own: s.addrs, log: s.log.Warn, others: map[string]memberRecord{}}
	s.memberView = v
	if !s.store.shared() {
		return nil
	}
	var addrs []string
	for _, a := range s.addrs() {
		addrs = append(addrs, a.String())
	}
	if err := s.store.announce(addrs); err != nil {
		s.log.Warn("announcing this coordinator's addresses in its member record", logError, err)
	}
	var rev int64
	err := s.store.View(func(tx *Tx) error {
		var err error
		if rev, err = tx.revision(); err != nil {
			return err
		}
		batch := watchBatch{reset: true, rev: rev}
		err = tx.kv.scan([]byte(membersPrefix), nil, false, func(k, v []byte) (bool, error) {
			batch.events = append(batch.events, storeEvent{key: string(k), value: slices.Clone(v), rev: rev})
			return true, nil
		})
		if err == nil {
			v.apply(batch)
		}
		return err
	})
	if err != nil {
		return err
	}
	s.store.watch(membersPrefix, rev, v.apply)
	return nil
}

// apply takes a watch's changes of c/. A record that does not decode is
// logged and counts as no member; the key, not the record, names the
// instance.
func (v *memberView) apply(b watchBatch) {
	v.mu.Lock()
	if b.reset {
		clear(v.others)
	}
	for _, e := range b.events {
		name, ok := strings.CutPrefix(e.key, membersPrefix)
		if !ok || name == v.self {
			continue
		}
		var rec memberRecord
		if e.value == nil {
			delete(v.others, name)
			continue
		}
		if err := json.Unmarshal(e.value, &rec); err != nil {
			v.log("a member record that does not decode: ignored", "key", e.key, logError, err)
			delete(v.others, name)
			continue
		}
		rec.Instance = name
		v.others[name] = rec
	}
	changed := slices.Clone(v.changed)
	v.mu.Unlock()
	for _, fn := range changed {
		fn()
	}
}

// members lists the site's live coordinators: this one first, then the
// others by instance name. On Badger, only this one.
func (s *Service) members() []member {
	v := s.memberView
	out := []member{{Instance: v.self, Addrs: v.own(), Self: true}}
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, rec := range v.others {
		m := member{Instance: rec.Instance, Started: time.Unix(rec.Started, 0), Version: rec.Version}
		for _, a := range rec.Addrs {
			if addr, err := ma.NewMultiaddr(a); err == nil {
				m.Addrs = append(m.Addrs, addr)
			}
		}
		out = append(out, m)
	}
	slices.SortFunc(out[1:], func(a, b member) int { return cmp.Compare(a.Instance, b.Instance) })
	return out
}

// memberAddrs is every address the site's coordinators serve at: this
// coordinator's own first, then the other live members' (by instance
// name), each once, without /p2p/ (all have the site's peer ID). The
// design's "siteAddrs" (jumpoints.go has a siteAddrs of its own: own
// addresses with /p2p/ and the relays').
func (s *Service) memberAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	seen := map[string]bool{}
	for _, m := range s.members() {
		for _, a := range m.Addrs {
			if !seen[string(a.Bytes())] {
				seen[string(a.Bytes())] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// onMembersChanged runs fn (on the watch's goroutine) after every change
// of the other members: one joined, left, or its lease ended.
func (s *Service) onMembersChanged(fn func()) {
	v := s.memberView
	v.mu.Lock()
	v.changed = append(v.changed, fn)
	v.mu.Unlock()
}

// PeersHeld is how many peers are connected to this coordinator: on a site
// of several, the peers online through it (PeerCounts' online is the
// site's). The peers_online metric, so that a sum over the site's
// coordinators counts each peer once.
func (s *Service) PeersHeld() int { return len(s.peers.sessions()) }
