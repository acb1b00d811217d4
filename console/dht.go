package console

import (
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/mesh/dht"
)

// The coordinator's addresses for a peer are authoritative but may be
// stale: the peer moved after the grant, or a relay sees it better than
// the coordinator does. When a connect fails, the console asks the site's
// private DHT (mesh/dht: the coordinator and the relays) where the peer is,
// and tries once more if that taught it something.

// DHTLookupTimeout bounds that lookup, connecting to the DHT's servers
// included.
const DHTLookupTimeout = 5 * time.Second

// Results of DHT lookups, the values of the lookups counter's "result" label.
const (
	LookupFound    = "found"
	LookupNotFound = "not_found"
)

var dhtLookups = func() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "jumpmesh", Subsystem: "console", Name: "dht_lookups_total",
		Help: "Lookups in the site DHT after a peer did not answer at the coordinator's addresses, by result.",
	}, []string{"result"})
	// Both results show from the start, at 0, so alerts can use rate().
	c.WithLabelValues(LookupFound)
	c.WithLabelValues(LookupNotFound)
	return c
}()

// DHTLookups counts this process's lookups in the site DHT by result
// (LookupFound, LookupNotFound), for a process that serves metrics to
// register.
func DHTLookups() *prometheus.CounterVec { return dhtLookups }

// retriedKey marks the context of the attempt connectFound makes, so that
// one fails without looking up again.
type retriedKey struct{}

// connectFound is Connect's fallback after the peer did not answer
// (failed is that error, returned when the fallback does not help). It
// asks the site DHT where id is, within DHTLookupTimeout, and if that
// taught it addresses the first attempt did not dial, Connect tries once
// more (all the peer's addresses, the new ones among them). A console told
// to use relays only does not look up.
func (c *Client) connectFound(ctx context.Context, id peer.ID, relays []ma.Multiaddr, forceRelay bool, failed error) error {
	if forceRelay || ctx.Err() != nil || ctx.Value(retriedKey{}) != nil {
		return failed
	}
	// Everything the swarm had to dial, not only what it was handed.
	tried := c.host.Peerstore().Addrs(id)
	lctx, cancel := context.WithTimeout(ctx, DHTLookupTimeout)
	found, err := dht.Lookup(lctx, c.host, c.Site(), c.dhtServers(relays), id)
	cancel()
	if err != nil {
		dhtLookups.WithLabelValues(LookupNotFound).Inc()
		return failed
	}
	dhtLookups.WithLabelValues(LookupFound).Inc()
	var fresh []ma.Multiaddr
	for _, a := range found.Addrs {
		if !slices.ContainsFunc(tried, a.Equal) {
			fresh = append(fresh, a)
		}
	}
	if len(fresh) == 0 {
		return failed
	}
	return c.Connect(context.WithValue(ctx, retriedKey{}, true), id, fresh, relays, false)
}

// dhtServers are the DHT servers the console knows: its coordinator and the
// relays it was handed.
func (c *Client) dhtServers(relays []ma.Multiaddr) []peer.AddrInfo {
	servers := []peer.AddrInfo{{ID: c.Site(), Addrs: slices.Clone(c.SiteInfo().Addrs)}}
	for _, a := range relays {
		info, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			continue
		}
		if i := slices.IndexFunc(servers, func(s peer.AddrInfo) bool { return s.ID == info.ID }); i >= 0 {
			servers[i].Addrs = append(servers[i].Addrs, info.Addrs...)
		} else {
			servers = append(servers, *info)
		}
	}
	return servers
}
