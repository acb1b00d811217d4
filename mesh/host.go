package mesh

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/observedaddrs"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// HostConfig describes a libp2p host of any jumpmesh party. The zero value
// (plus a Key) is a host that dials out and does not listen.
type HostConfig struct {
	// Key is the party's identity. Required.
	Key crypto.PrivKey
	// ListenAddrs are multiaddrs to listen on; none means dial-only.
	ListenAddrs []ma.Multiaddr
	// AnnounceAddrs, when set, replace the addresses the host advertises
	// (a coordinator behind port forwarding announces its public address).
	AnnounceAddrs []ma.Multiaddr
	// Registerer receives libp2p's own metrics; nil disables them.
	Registerer prometheus.Registerer
	// RelayClient lets the host dial and accept connections through circuit
	// relays and upgrade them to direct ones by hole punching (DCUtR):
	// peers and consoles. Off, the host neither relays nor is relayed.
	RelayClient bool
	// Puncher, with RelayClient, is for hosts that accept relayed
	// connections (peers): libp2p's hole-punching service is left out and
	// the caller runs StartPuncher, which starts at once and retries.
	// Consoles, which dial through relays, keep libp2p's service: it
	// answers the peer's punch.
	Puncher bool
	// ResourceManager and ConnManager, for hosts that hold every peer of a
	// site (coordinator, relays), replace libp2p's, which are sized for a
	// node of a public network: they capped a 2-core coordinator at 256
	// inbound connections, pruned it down to 160, and allow 8 connections
	// per IPv4 address — an office behind one NAT. Such a host sizes them
	// for its peers (coordinator.Resources, relay.Resources), finite, since
	// it faces the Internet; it closes the resource manager after the host
	// (libp2p does not close one it was given). Nil keeps libp2p's.
	ResourceManager network.ResourceManager
	ConnManager     connmgr.ConnManager
	// TCPDialer, when set, dials every TCP connection (libp2p's
	// tcp.WithDialerForAddr) and QUIC is left out, since a QUIC dial would
	// bypass it: a peer behind a jumpoint reaches the site only through
	// tunnels (mesh/tunnel), a console's tunnel host reaches such peers.
	// The dialer's connections do not reuse the listening port, so a host
	// with one cannot be hole-punched.
	TCPDialer tcp.DialerForAddr
	// DialRanker, when set, orders the host's dials to a peer's addresses
	// (consoles: LANDialRanker); nil keeps libp2p's default ranker.
	DialRanker network.DialRanker
	// PatientDials is for hosts that dial a coordinator, which during a
	// storm keeps the connections it cannot serve yet waiting (its waiting
	// room, then the kernel's accept queue: coordinator/handshakes.go)
	// rather than start handshakes that would time out: peers. A dial to one address may take PatientDialTimeout,
	// not libp2p's 15 s (5 s on a private network), and TCP's connect half
	// of that, not 5 s. Other dials lose nothing: addresses are dialled in
	// parallel and the first that connects wins.
	PatientDials bool
	// ShortLived is for a process that builds its host, makes a call or
	// two and exits (a console's command): the host signs with
	// ShortLivedKey(Key), which skips crypto/ed25519's base-point table
	// (0.7–1.3 ms of CPU at the first signature; the host's TCP and QUIC
	// transports each sign a TLS certificate).
	ShortLived bool
	// Extra options are appended last, so they win.
	Extra []libp2p.Option
}

// NewHost builds the libp2p host every party uses: TCP and QUIC, Noise and
// TLS, the default resource manager.
func NewHost(cfg HostConfig) (host.Host, error) {
	hostBuilt.Store(true)
	if cfg.Key == nil {
		return nil, fmt.Errorf("host config: no key")
	}
	key := cfg.Key
	if cfg.ShortLived {
		key = ShortLivedKey(key)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		tcpTransport(cfg.TCPDialer, cfg.PatientDials),
		// TLS 1.3 first: AES-GCM with the CPU's AES instructions outruns
		// Noise's ChaCha20-Poly1305 on the hosts we measured (see README).
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
	}
	if cfg.TCPDialer == nil {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	switch {
	case cfg.RelayClient && cfg.Puncher:
		opts = append(opts, libp2p.EnableRelay())
	case cfg.RelayClient:
		opts = append(opts, libp2p.EnableRelay(), libp2p.EnableHolePunching())
	default:
		opts = append(opts, libp2p.DisableRelay())
	}
	if len(cfg.ListenAddrs) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrs(cfg.ListenAddrs...))
	}
	if len(cfg.AnnounceAddrs) > 0 {
		announce := append([]ma.Multiaddr(nil), cfg.AnnounceAddrs...)
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	if cfg.ResourceManager != nil {
		opts = append(opts, libp2p.ResourceManager(cfg.ResourceManager))
	}
	if cfg.ConnManager != nil {
		opts = append(opts, libp2p.ConnectionManager(cfg.ConnManager))
	}
	if cfg.Registerer != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Registerer))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	var swarmOpts []swarm.Option // libp2p.SwarmOpts keeps only its last call's
	if cfg.DialRanker != nil {
		swarmOpts = append(swarmOpts, swarm.WithDialRanker(cfg.DialRanker))
	}
	if cfg.PatientDials {
		swarmOpts = append(swarmOpts, swarm.WithDialTimeout(PatientDialTimeout), swarm.WithDialTimeoutLocal(PatientDialTimeout))
	}
	if len(swarmOpts) > 0 {
		opts = append(opts, libp2p.SwarmOpts(swarmOpts...))
	}
	if cfg.TCPDialer == nil {
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("host config: %w", err)
		}
		opts = append(opts, keepQUICConns(id))
	}
	opts = append(opts, cfg.Extra...)
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting libp2p host: %w", err)
	}
	return h, nil
}

// PatientDialTimeout bounds one address's dial of a host with
// PatientDials: a storm of 5,000 peers served at ~150 handshakes a second
// (2 shared cores) keeps the last in the coordinator's accept queue ~33 s.
const PatientDialTimeout = time.Minute

func tcpTransport(d tcp.DialerForAddr, patient bool) libp2p.Option {
	var opts []any
	if d != nil {
		opts = append(opts, tcp.WithDialerForAddr(d))
	}
	if patient {
		// A full accept queue drops SYNs; TCP resends them after 1, 3, 7,
		// 15 s.
		opts = append(opts, tcp.WithConnectionTimeout(PatientDialTimeout/2))
	}
	return libp2p.Transport(tcp.NewTCPTransport, opts...)
}

// go-libp2p reads some settings from package variables, not options. They
// are set here, once, while the process starts and before any host exists,
// never while hosts run (a host's goroutines read them unlocked). See also
// EnableLabPublicRanges.
func init() {
	// A site's hosts are observed by few, trusted nodes (the coordinator,
	// one or two relays): libp2p's default of 4 observers before trusting
	// an observed address would leave NATed peers and consoles without a
	// public address, and hole punching would never start.
	observedaddrs.ActivationThresh = 2
}

// hostBuilt is set by the first NewHost: from then on go-libp2p's package
// variables are no longer changed.
var hostBuilt atomic.Bool

// ParseMultiaddrs parses each string as a multiaddr, naming the bad one.
func ParseMultiaddrs(ss []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(ss))
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, catalog.Errorf(catalog.CodeInvalidArgument, "%q is not a multiaddr: %v", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}
