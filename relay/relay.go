package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/ops"
)

// Relay is a running site relay: a libp2p host with the circuit relay v2
// service, the ACL and its refresher, and the metrics endpoint.
type Relay struct {
	cfg    Config
	res    Resources
	log    *slog.Logger
	site   peer.AddrInfo // the coordinator
	member *member.Client
	host   host.Host
	rm     network.ResourceManager
	svc    *relayv2.Relay
	acl    *ACL
	tracer *tracer
	dht    *dht.Node
	splice *splicer // nil when Config.SpliceAddr is "off"

	refreshFailures prometheus.Counter
	// aclAt is when the ACL was last fetched (Unix ns); serverEvery is the
	// refresh period the coordinator asked for (ns, 0 if none yet).
	aclAt       atomic.Int64
	serverEvery atomic.Int64

	http *ops.Server // nil when the metrics/health endpoint is off

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New enrolls the relay on its first run (Config.Invite), starts its host,
// fetches the ACL and only then starts relaying, so nobody is ever served
// before the member list is known. ctx bounds the enrollment and that first
// fetch; the relay then runs until Close (or Run's context ends). A relay
// that cannot fetch its first ACL does not start: it would refuse everyone.
func New(ctx context.Context, cfg Config) (_ *Relay, err error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	listen, err := mesh.ParseMultiaddrs(cfg.listen())
	if err != nil {
		return nil, err
	}
	announce, err := mesh.ParseMultiaddrs(cfg.Announce)
	if err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, res: cfg.Resources.withDefaults(), log: cfg.logger()}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.acl = NewACL(reg, r.log)
	r.acl.awaitUnknown = unknownWait // the refresh loop below serves its early refreshes
	r.tracer = newTracer(reg)
	r.registerACLMetrics(reg)

	rm, cm, err := r.res.managers()
	if err != nil {
		return nil, err
	}
	r.rm = rm
	// The relay service is started below by hand rather than with
	// libp2p.EnableRelayService: that one starts only once AutoNAT finds
	// the host public, asynchronously, and gives no handle to close it.
	// The host is the relay's member client's (enroll), so its ACL
	// fetches take the coordinator's members' lane.
	r.member, err = enroll(ctx, &cfg, r.log, mesh.HostConfig{ListenAddrs: listen, AnnounceAddrs: announce, Registerer: reg,
		Extra: []libp2p.Option{libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm)}})
	if err != nil {
		cm.Close()
		return nil, err
	}
	r.host, r.site = r.member.Host(), r.member.SiteInfo()
	r.member.FindSiteAlso(r.dhtServers)
	if err := r.refresh(ctx); err != nil {
		return nil, err
	}
	// The relay service sees the host through serviceHost: tests put a tap
	// on the streams it relays (what the relay could read).
	var svcHost host.Host = r.host
	if serviceHost != nil {
		svcHost = serviceHost(r.host)
	}
	r.svc, err = relayv2.New(svcHost,
		relayv2.WithResources(r.res.relayv2()),
		relayv2.WithACL(r.acl),
		relayv2.WithMetricsTracer(r.tracer),
		relayv2.WithReservationAddressFilter(r.inReservation))
	if err != nil {
		return nil, fmt.Errorf("starting the relay service: %w", err)
	}
	// A splice listener the operator asked for must start; the default
	// one (its port taken, say) only logs: forwards then stay in circuits.
	if addr := cfg.spliceAddr(); addr != "off" {
		r.splice, err = newSplicer(addr, r.acl, r.res, reg, r.log)
		switch {
		case err != nil && cfg.SpliceAddr != "":
			return nil, fmt.Errorf("starting the splice listener: %w", err)
		case err != nil:
			r.log.Warn("no splice listener: relayed forwards stay in their circuits", logAddr, addr, logError, err)
		default:
			r.host.SetStreamHandler(channel.RelayBulkProtocol, r.splice.handleSlot)
		}
	}
	if err := r.startDHT(); err != nil {
		return nil, err
	}
	if r.http, err = ops.Serve(cfg.httpAddr(), reg, r.serveHealth, r.log); err != nil {
		return nil, err
	}
	r.wg.Add(1)
	go r.refreshLoop(r.ctx)
	r.log.Info("relay running", logRelay, r.host.ID(), logAddrs, fmt.Sprint(r.Addrs()), logHTTP, r.HTTPAddr(),
		logMembers, r.acl.Len())
	return r, nil
}

// serviceHost, when set (tests only), wraps the host the circuit v2 service
// is given, and with it every stream the service relays.
var serviceHost func(host.Host) host.Host

// Run blocks until ctx is done or the relay is closed, then closes it.
func (r *Relay) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-r.ctx.Done():
	}
	return r.Close()
}

// Close stops relaying (open circuits end), stops the refresher and the
// metrics endpoint, and waits for them. It is safe to call more than once.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		// Before the relay service ends its circuits and reservations:
		// their peers redial at once, and are refused rather than taken
		// in and reset.
		mesh.StopListening(r.host)
		r.cancel()
		var errs []error
		errs = append(errs, r.http.Close())
		// The refresher uses the host and the client: let it finish first.
		r.wg.Wait()
		if r.svc != nil {
			errs = append(errs, r.svc.Close())
		}
		if r.splice != nil {
			errs = append(errs, r.splice.close())
		}
		if r.dht != nil {
			errs = append(errs, r.dht.Close())
		}
		if r.host != nil {
			errs = append(errs, r.host.Close())
		}
		if r.rm != nil {
			// libp2p does not close a resource manager it was given.
			errs = append(errs, r.rm.Close())
		}

		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// ID is the relay's peer ID.
func (r *Relay) ID() peer.ID { return r.host.ID() }

// Addrs are the relay's addresses as members should dial them, each ending
// in /p2p/<relay> (what `coordinator init --relay` takes).
func (r *Relay) Addrs() []ma.Multiaddr {
	full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: r.host.ID(), Addrs: r.advertised()})
	if err != nil {
		return nil
	}
	return full
}

// HTTPAddr is the metrics/health listener's address, or "" when disabled.
func (r *Relay) HTTPAddr() string { return r.http.Addr() }

// advertised are the addresses reported to the coordinator and put in
// reservations: the announced ones if set, else the listen addresses
// without loopback and link-local ones, unless that leaves nothing (a relay
// on 127.0.0.1 in a test or a lab). Private addresses stay: a site's
// members are often on the relay's own network, and go-libp2p's default of
// public addresses only would also drop the lab's documentation ranges.
func (r *Relay) advertised() []ma.Multiaddr {
	all := r.host.Addrs()
	out := make([]ma.Multiaddr, 0, len(all))
	for _, a := range all {
		if !manet.IsIPLoopback(a) && !manet.IsIP6LinkLocal(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// inReservation is the relay service's address filter for reservations.
func (r *Relay) inReservation(a ma.Multiaddr) bool {
	return slices.ContainsFunc(r.advertised(), a.Equal)
}
