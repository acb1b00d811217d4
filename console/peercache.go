package console

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// PeerCacheFile, in the console home, keeps the direct addresses of the
// peers the last jumps reached, so that the next jump to the same peer
// dials it while the grant is asked for (SetPeerCache). They are hints:
// the connection authenticates the peer ID, the grant still decides, and
// a wrong entry costs a dial that leads nowhere.
const PeerCacheFile = "peers-cache.json"

// peerCacheSize bounds the entries kept (the most recent jumps).
const peerCacheSize = 64

// peerCacheEntry is where one peer, named by a jump's PEER, was reached.
type peerCacheEntry struct {
	Ref   string    `json:"ref"`
	ID    string    `json:"id"`
	Addrs []string  `json:"addrs"`
	At    time.Time `json:"at"`
}

// peerCache is the console's PeerCacheFile.
type peerCache struct {
	path string
	mu   sync.Mutex
}

// SetPeerCache makes c's jumps dial a peer at its addresses from the last
// jump to the same PEER while the grant is asked for, and record where
// each peer was reached in the console home (jump and the agent; off by
// default, so that a jump with ForceRelay is not preceded by a direct dial).
func (c *Client) SetPeerCache(home string) {
	c.peers = &peerCache{path: filepath.Join(home, PeerCacheFile)}
}

func (p *peerCache) load() []peerCacheEntry {
	var entries []peerCacheEntry
	_ = mesh.ReadJSONFile(p.path, &entries) // missing or damaged: no hints
	return entries
}

// lookup is ref's entry, if any.
func (p *peerCache) lookup(ref string) (peer.AddrInfo, bool) {
	if p == nil || ref == "" {
		return peer.AddrInfo{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.load() {
		if e.Ref != ref {
			continue
		}
		id, err := peer.Decode(e.ID)
		addrs, aerr := mesh.ParseMultiaddrs(e.Addrs)
		if err != nil || aerr != nil || len(addrs) == 0 {
			return peer.AddrInfo{}, false
		}
		return peer.AddrInfo{ID: id, Addrs: addrs}, true
	}
	return peer.AddrInfo{}, false
}

// note records that ref reached id at its direct addresses (relayed ones
// are not hints worth dialling early), newest first.
func (p *peerCache) note(ref string, id peer.ID, addrs []ma.Multiaddr) {
	if p == nil || ref == "" || len(addrs) == 0 {
		return
	}
	strs := make([]string, len(addrs))
	for i, a := range addrs {
		strs[i] = a.String()
	}
	// The coordinator lists a peer's addresses in no fixed order: kept
	// sorted, the same addresses are the same entry and are not written
	// again (each write was an fsync on every jump, the agent's too).
	slices.Sort(strs)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.load()
	if len(old) > 0 && old[0].Ref == ref && old[0].ID == id.String() && slices.Equal(old[0].Addrs, strs) {
		return // as recorded: no write (and no fsync) on the jump's path
	}
	entries := []peerCacheEntry{{Ref: ref, ID: id.String(), Addrs: strs, At: time.Now().UTC()}}
	for _, e := range old {
		if e.Ref != ref && len(entries) < peerCacheSize {
			entries = append(entries, e)
		}
	}
	_ = mesh.WriteJSONFile(p.path, entries, 0o600) // a hint: a failed write costs the next jump its head start
}

// dialEarly starts dialling ref's peer at its cached addresses while the
// grant is asked for, and says which peer it dials (also when connected
// already) and when the dial is over (dialed closes); stop ends the dial
// if it is still running (the grant was refused, or named another peer).
// Connect then finds the connection made, or joins the dial in progress
// (libp2p dials a peer once).
func (c *Client) dialEarly(ctx context.Context, ref string) (id peer.ID, dialed <-chan struct{}, stop func()) {
	info, ok := c.peers.lookup(ref)
	if !ok {
		return "", nil, func() {}
	}
	done := make(chan struct{})
	if c.host.Network().Connectedness(info.ID) == network.Connected {
		close(done)
		return info.ID, done, func() {}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ConnectTimeout)
	t := c.timingOf(ctx)
	go func() {
		defer close(done)
		defer cancel()
		end := t.Begin("peer dial, early (cached addresses)")
		// The addresses Connect would dial (TCP preferred): a QUIC and a
		// TCP handshake at once cost the coordinator dial its CPU.
		_ = c.host.Connect(dctx, peer.AddrInfo{ID: info.ID, Addrs: dialAddrs(info.ID, info.Addrs, nil, false)})
		end()
	}()
	return info.ID, done, cancel
}
