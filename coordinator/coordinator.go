package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/mesh/ops"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// Config runs a coordinator. The zero value of every field but DataDir
// means "as site.json says" or the default.
type Config struct {
	DataDir string
	// Listen overrides site.json's listen addresses.
	Listen []string
	// HTTPAddr overrides site.json's metrics/health address; "off" disables.
	HTTPAddr string
	Logger   *slog.Logger
	Clock    mesh.Clock
	// AdmissionRate, for benchmarks and labs, replaces the site's
	// connection-rate: 0 uses the site setting, < 0 admits without limit.
	AdmissionRate float64
	// HostOptions, for benchmarks and labs, are extra libp2p options for
	// the coordinator's host, applied last (e.g. resource manager limits).
	HostOptions []libp2p.Option
	// Resources bound what callers may make the coordinator spend; zero
	// fields are DefaultResources.
	Resources Resources
	// Store chooses where the site's records live: Badger in DataDir (the
	// zero value) or etcd (store_etcd.go). The site key and site.json stay
	// in DataDir either way.
	Store StoreConfig
}

// Coordinator is a running site coordinator: libp2p host, control service,
// store and HTTP endpoint.
type Coordinator struct {
	site    *Site
	store   *Store
	host    host.Host
	rm      network.ResourceManager
	gate    *handshakeGate
	lane    *memberLane
	service *Service
	dht     *dht.Node
	log     *slog.Logger
	metrics *metrics

	http *ops.Server // nil when the metrics/health endpoint is off

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// handlers counts stream handlers at work, so Close waits for them
	// before closing the store they write to.
	handlers  sync.WaitGroup
	handlerMu sync.Mutex
	closing   bool
	closeOnce sync.Once
	closeErr  error
}

// New opens the site in cfg.DataDir and starts serving. Close stops it.
func New(cfg Config) (_ *Coordinator, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	site, err := OpenSite(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	listen := site.Config.Listen
	if len(cfg.Listen) > 0 {
		listen = cfg.Listen
	}
	listenAddrs, err := mesh.ParseMultiaddrs(listen)
	if err != nil {
		return nil, err
	}
	announce, err := mesh.ParseMultiaddrs(site.Config.PublicAddrs)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{site: site, log: log}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.store, err = openSiteStore(site, cfg.Store, StoreOptions{Logger: log}); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.metrics = newMetrics(reg)
	res := cfg.Resources.withDefaults()
	if err := res.validate(); err != nil {
		return nil, err
	}
	rm, cm, err := res.managers()
	if err != nil {
		return nil, err
	}
	c.gate = newHandshakeGate(rm, res.MaxHandshakes, res.HandshakeHold)
	c.gate.holdUntilOpen() // until every handler is set, below
	c.rm = c.gate
	c.lane = newMemberLane(listenAddrs)
	c.gate.lane = c.lane
	// The members' lane is told to members only (lane.go): the host's
	// addresses leave it out, announced or not.
	advertise := func(addrs []ma.Multiaddr) []ma.Multiaddr {
		if len(announce) > 0 {
			addrs = announce
		}
		return c.lane.withoutLane(addrs)
	}
	// The security transports wait at the gate: a connection waits for its
	// place as its handshake starts, in the gate's waiting room, not in
	// the kernel's accept queue (handshakes.go).
	hostOpts := append(res.hostOptions(), libp2p.ConnectionGater(laneGater{lane: c.lane, gate: c.gate}), libp2p.AddrsFactory(advertise), c.gate.securityOption())
	c.host, err = mesh.NewHost(mesh.HostConfig{Key: site.Key, ListenAddrs: listenAddrs, Registerer: reg,
		ResourceManager: c.gate, ConnManager: cm, Extra: append(hostOpts, cfg.HostOptions...)})
	if err != nil {
		cm.Close()
		return nil, err
	}
	if startingHook != nil {
		startingHook(c.gate.startWaited)
	}
	signer, err := mesh.NewKeySigner(site.Key)
	if err != nil {
		return nil, err
	}
	c.service, err = NewService(ServiceConfig{
		Store: c.store, Signer: signer, Clock: cfg.Clock, Logger: log,
		Addrs: func() []ma.Multiaddr { return site.AdvertisedAddrs(c.host.Addrs()) }, Relays: site.Relays(),
		PeerAddrs:     func(id peer.ID) []ma.Multiaddr { return c.host.Peerstore().Addrs(id) },
		ConnAddrs:     func(id peer.ID) []ma.Multiaddr { return connRemoteAddrs(c.host, id) },
		AdmissionRate: cfg.AdmissionRate, Resources: res, Wake: hostWakeSender{c.host},
	})
	if err != nil {
		return nil, err
	}
	c.listenLane(log)
	if err := c.startDHT(log); err != nil {
		return nil, err
	}
	c.metrics.registerPeers(reg, c.service)
	reg.MustRegister(stormMetrics{gate: c.gate, service: c.service})
	c.service.paths.register(reg)
	c.service.RegisterWakeMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	control.Serve(ctx, c.host, c.handle, control.WithGate(c.service))
	c.host.SetStreamHandler(peerproto.Protocol, func(st network.Stream) {
		if !c.enter() {
			// Closing: told to come back, not reset (peerproto.go).
			c.service.retryWhileClosing(st)
			return
		}
		// The connection manager never closes a peer's connection while its
		// stream is open (one tag per stream: a reconnecting peer's old
		// stream ends after its new one began). ServePeer returns once the
		// peer is welcomed; done runs when its stream has ended.
		tag := "jumpmesh-peer-" + st.ID()
		c.host.ConnManager().Protect(st.Conn().RemotePeer(), tag)
		c.service.ServePeer(ctx, st, func() {
			c.host.ConnManager().Unprotect(st.Conn().RemotePeer(), tag)
			c.handlers.Done()
		})
	})
	// Every handler is set: connections held since the host started
	// listening come in now (handshakes.go, holdUntilOpen).
	c.gate.open()
	c.warnAcceptQueue(log)
	c.wg.Add(1)
	go c.sweep(ctx)
	httpAddr := site.Config.HTTPAddr
	if cfg.HTTPAddr != "" {
		httpAddr = cfg.HTTPAddr
	}
	if c.http, err = ops.Serve(httpAddr, reg, c.serveHealth, log); err != nil {
		return nil, err
	}
	log.Info("coordinator running", "site", site.ID, "addrs", fmt.Sprint(c.host.Addrs()), "http", c.HTTPAddr())
	return c, nil
}

// startingHook, when set (tests only), runs in New once the host listens
// and before the coordinator's handlers are set; waited is closed when a
// connection first waits at the gate for them.
var startingHook func(waited <-chan struct{})

// enter registers a stream handler at work; false once Close has begun.
func (c *Coordinator) enter() bool {
	c.handlerMu.Lock()
	defer c.handlerMu.Unlock()
	if c.closing {
		return false
	}
	c.handlers.Add(1)
	return true
}

func (c *Coordinator) handle(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
	if !c.enter() {
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(shutting down)")
	}
	defer c.handlers.Done()
	member := c.service.isMember(remote)
	if member {
		defer c.gate.prioritize()() // a technician's request before new handshakes (handshakes.go)
	}
	start := time.Now()
	name := control.RequestName(req)
	resp, err := c.service.Handle(ctx, remote, req)
	if resp != nil {
		resp.CoordinatorAddrs = encodeAddrs(c.service.coordinatorAddrs())
		if member || req.GetLogin() != nil {
			resp.MemberLane = encodeAddrs(c.lane.announce(c.site.AdvertisedAddrs(c.host.Addrs())))
		}
	}
	code := catalog.CodeOf(err)
	c.metrics.observe(name, code, time.Since(start))
	if err != nil {
		level := slog.LevelInfo
		if code == catalog.CodeInternal {
			level = slog.LevelError
		}
		c.log.Log(ctx, level, "request refused", logRequest, name, logRemote, remote, logCode, code, logError, err)
	} else if c.log.Enabled(ctx, slog.LevelDebug) {
		c.log.Debug("request served", logRequest, name, logRemote, remote)
	}
	return resp, err
}

// Health is what /healthz answers.
type Health struct {
	Status string   `json:"status"`
	Site   string   `json:"site"`
	Addrs  []string `json:"addrs"`
	Error  string   `json:"error,omitempty"`
}

func (c *Coordinator) serveHealth(w http.ResponseWriter, r *http.Request) {
	h := Health{Status: "ok", Site: c.site.ID.String()}
	for _, a := range c.LoginAddrs() {
		h.Addrs = append(h.Addrs, a.String())
	}
	// A read transaction proves the store answers.
	if err := c.store.View(func(tx *Tx) error { _, err := tx.Settings(); return err }); err != nil {
		h.Status, h.Error = "unhealthy", err.Error()
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(h)
}

// sweep applies the lifecycle horizons every SweepInterval, looks for
// closed jump windows every JumpWindowCheck and, on a shared store, moves
// peers beyond this coordinator's share every Resources.RebalanceEvery
// (rebalance.go).
func (c *Coordinator) sweep(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	windows := time.NewTicker(JumpWindowCheck)
	defer windows.Stop()
	var rebalance <-chan time.Time
	if every := c.service.resources.RebalanceEvery; every > 0 && c.store.shared() {
		r := time.NewTicker(every)
		defer r.Stop()
		rebalance = r.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.service.Sweep(c.service.clock.Now())
		case <-windows.C:
			c.service.CheckJumpWindows(c.service.clock.Now())
		case <-rebalance:
			c.service.Rebalance()
		}
	}
}

// Run blocks until ctx is done, then closes the coordinator.
func (c *Coordinator) Run(ctx context.Context) error {
	<-ctx.Done()
	return c.Close()
}

// Close stops serving, waits for workers and closes the store. It is safe
// to call more than once.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() {
		c.handlerMu.Lock()
		c.closing = true
		c.handlerMu.Unlock()
		if c.gate != nil {
			c.gate.close() // the accept loop must not wait for a place while the listeners and the host close
		}
		// Before anything ends a connection: a peer redials at once, and
		// is refused rather than taken in and reset (1–109 of 2,000 peers
		// in 4 of 13 BenchmarkReconnectStorm runs before).
		mesh.StopListening(c.host)
		if c.cancel != nil {
			c.cancel()
		}
		if c.service != nil {
			c.service.strangers.close()
		}
		var errs []error
		errs = append(errs, c.http.Close())
		if c.dht != nil {
			errs = append(errs, c.dht.Close())
		}
		if c.service != nil {
			c.service.recordOffline()
		}
		if closingHook != nil {
			closingHook(c)
		}
		if c.host != nil {
			c.host.RemoveStreamHandler(control.Protocol)
			c.host.RemoveStreamHandler(peerproto.Protocol)
			errs = append(errs, c.host.Close())
		}
		if c.rm != nil {
			errs = append(errs, c.rm.Close()) // libp2p does not close one it was given
		}
		c.handlers.Wait() // closing the host reset their streams
		c.wg.Wait()
		if c.service != nil {
			c.service.waitPushes() // nothing pushes any more; their writes fail fast on reset streams
		}
		if c.store != nil {
			errs = append(errs, c.store.Close())
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// closingHook, when set (tests only), runs in Close before the host
// closes its connections.
var closingHook func(*Coordinator)

// Handshakes reports the handshake gate's bound and counters.
func (c *Coordinator) Handshakes() GateStats { return c.gate.stats() }

// ID is the site's peer ID.
func (c *Coordinator) ID() peer.ID { return c.site.ID }

// Host is the coordinator's libp2p host.
func (c *Coordinator) Host() host.Host { return c.host }

// Service is the control service (for in-process use).
func (c *Coordinator) Service() *Service { return c.service }

// LoginAddrs are the addresses consoles should use, with /p2p/.
func (c *Coordinator) LoginAddrs() []ma.Multiaddr { return c.site.LoginAddrs(c.host.Addrs()) }

// HTTPAddr is the metrics/health listener's address, or "" when disabled.
func (c *Coordinator) HTTPAddr() string { return c.http.Addr() }
