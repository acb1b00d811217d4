package dht

import (
	"context"
	"fmt"
	"slices"
	"time"

	kadpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
)

// Lookup bounds: a site has a handful of servers, and one that does not
// answer must not hold the lookup for long.
const (
	// AskTimeout bounds one FIND_NODE, connecting included.
	AskTimeout = 2 * time.Second
	// maxAsked bounds how many servers one lookup asks, whatever the
	// answers name.
	maxAsked = 64
)

// Lookup asks the site's DHT servers where id is, as a console does: it
// sends kad-dht's FIND_NODE for id to every server at once, and to each
// server named in an answer as soon as it is named (each server once), and
// returns every address of id they gave once every question is answered or
// timed out. It does not dial id: the caller dials all the addresses
// together. ctx bounds all of it.
//
// ErrNoServers: no server answered. ErrNotFound: none knows an address.
func Lookup(ctx context.Context, h host.Host, site peer.ID, servers []peer.AddrInfo, id peer.ID) (peer.AddrInfo, error) {
	proto := Protocol(site)
	type answer struct {
		closer []*peer.AddrInfo
		err    error
	}
	answers := make(chan answer)
	asked := map[peer.ID]bool{h.ID(): true, id: true}
	pending := 0
	ask := func(s peer.AddrInfo) {
		if asked[s.ID] || len(asked) >= maxAsked {
			return
		}
		asked[s.ID] = true
		pending++
		go func() {
			actx, cancel := context.WithTimeout(ctx, AskTimeout)
			defer cancel()
			closer, err := findNode(actx, h, proto, s, id)
			answers <- answer{closer, err}
		}()
	}
	for _, s := range servers {
		ask(s)
	}
	found, answered := peer.AddrInfo{ID: id}, false
	for ; pending > 0; pending-- {
		a := <-answers
		answered = answered || a.err == nil
		for _, ai := range a.closer {
			if ai.ID == id {
				found.Addrs = appendNew(found.Addrs, ai.Addrs)
			} else {
				ask(*ai)
			}
		}
	}
	switch {
	case !answered:
		return found, ErrNoServers
	case len(found.Addrs) == 0:
		return found, fmt.Errorf("finding %s: %w", id, ErrNotFound)
	}
	return found, nil
}

// findNode asks server for the nodes closest to id; the site's servers
// put id itself first when they know its addresses (FIND_NODE's rule for
// peer lookups).
func findNode(ctx context.Context, h host.Host, proto protocol.ID, server peer.AddrInfo, id peer.ID) ([]*peer.AddrInfo, error) {
	h.Peerstore().AddAddrs(server.ID, server.Addrs, peerstore.TempAddrTTL)
	st, err := h.NewStream(ctx, server.ID, proto)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	ms := frame.NewStream(st, network.MessageSizeMax)
	if err := ms.Write(kadpb.NewMessage(kadpb.Message_FIND_NODE, []byte(id), 0), 0); err != nil {
		st.Reset()
		return nil, err
	}
	var resp kadpb.Message
	if err := ms.Read(&resp, 0); err != nil {
		st.Reset()
		return nil, err
	}
	return kadpb.PBPeersToPeerInfos(resp.GetCloserPeers()), nil
}

// appendNew appends the addresses of add that to does not hold yet.
func appendNew(to, add []ma.Multiaddr) []ma.Multiaddr {
	for _, a := range add {
		if !slices.ContainsFunc(to, a.Equal) {
			to = append(to, a)
		}
	}
	return to
}

// LookupSite asks servers where the site's coordinators are (Lookup of
// the site's own ID, within AskTimeout) and returns the addresses they
// answered, without /p2p/, each once, at most mesh.MaxCoordinatorAddrs.
// The answers are hints: only a dial's handshake proves the site's ID.
func LookupSite(ctx context.Context, h host.Host, site peer.ID, servers []peer.AddrInfo) ([]ma.Multiaddr, error) {
	ctx, cancel := context.WithTimeout(ctx, AskTimeout)
	defer cancel()
	found, err := Lookup(ctx, h, site, servers, site)
	if err != nil {
		return nil, err
	}
	var out []ma.Multiaddr
	for _, a := range found.Addrs {
		if a = mesh.CoordinatorAddr(site, a); a != nil && !slices.ContainsFunc(out, a.Equal) && len(out) < mesh.MaxCoordinatorAddrs {
			out = append(out, a)
		}
	}
	return out, nil
}
