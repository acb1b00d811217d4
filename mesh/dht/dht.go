package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Log field names.
const (
	logPeer  = "peer"
	logProto = "protocol"
)

// Prefix is the protocol prefix of a site's DHT: /jumpmesh/<site peer ID>.
func Prefix(site peer.ID) protocol.ID { return protocol.ID("/jumpmesh/" + site.String()) }

// Protocol is the protocol ID a site's DHT servers serve.
func Protocol(site peer.ID) protocol.ID { return Prefix(site) + "/kad/1.0.0" }

// Config runs a Node. Site, Infra and Member are required.
type Config struct {
	// Site is the site's peer ID; it names the protocol.
	Site peer.ID
	// Infra reports whether p is one of the site's infrastructure nodes:
	// only those enter the routing table and are asked during the node's
	// own lookups (routing table refreshes).
	Infra func(p peer.ID) bool
	// Member reports whether p may query this node.
	Member func(p peer.ID) bool
	// Bootstrap returns infrastructure nodes to connect to whenever the
	// routing table is empty; nil for none.
	Bootstrap func() []peer.AddrInfo
	Logger    *slog.Logger
}

func (c *Config) check() error {
	switch {
	case c.Site == "":
		return errors.New("dht config: no site")
	case c.Infra == nil:
		return errors.New("dht config: no infrastructure filter")
	case c.Member == nil:
		return errors.New("dht config: no member filter")
	}
	return nil
}

// Node is a server of a site's DHT (coordinator, relay, later jumpoint), on
// a host it does not own.
type Node struct {
	kad   *kaddht.IpfsDHT
	host  host.Host
	proto protocol.ID

	closeOnce sync.Once
	closeErr  error
}

// New starts a DHT server on h. Close stops it; h stays open.
func New(h host.Host, cfg Config) (*Node, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{host: h, proto: Protocol(cfg.Site)}
	opts := []kaddht.Option{
		kaddht.Mode(kaddht.ModeServer),
		kaddht.ProtocolPrefix(Prefix(cfg.Site)),
		// Peer routing only: no provider or value records, and a
		// validator that refuses any record that still came our way.
		kaddht.DisableProviders(),
		kaddht.DisableValues(),
		kaddht.Validator(noRecords{}),
		kaddht.RoutingTableFilter(func(_ any, p peer.ID) bool { return cfg.Infra(p) }),
		kaddht.QueryFilter(func(_ any, ai peer.AddrInfo) bool { return cfg.Infra(ai.ID) }),
	}
	if cfg.Bootstrap != nil {
		opts = append(opts, kaddht.BootstrapPeersFunc(cfg.Bootstrap))
	}
	kad, err := kaddht.New(&gatedHost{Host: h, member: cfg.Member, log: log}, opts...)
	if err != nil {
		return nil, fmt.Errorf("starting the site DHT: %w", err)
	}
	n.kad = kad
	log.Debug("site DHT server running", logProto, n.proto)
	return n, nil
}

// Close stops answering and stops the node's workers. It does not close
// the host. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// kad-dht leaves its handler on the host; a host that lives on
		// must not route streams to a closed node.
		n.host.RemoveStreamHandler(n.proto)
		n.closeErr = n.kad.Close()
	})
	return n.closeErr
}

// Protocol is the protocol ID this node serves.
func (n *Node) Protocol() protocol.ID { return n.proto }

// RoutingTable lists the infrastructure nodes in the routing table.
func (n *Node) RoutingTable() []peer.ID { return n.kad.RoutingTable().ListPeers() }

// gatedHost is the host as a server's kad-dht sees it: the handler it sets
// resets every stream from a remote that is not a member of the site,
// before reading a byte.
type gatedHost struct {
	host.Host
	member func(peer.ID) bool
	log    *slog.Logger
}

func (g *gatedHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	g.Host.SetStreamHandler(pid, func(s network.Stream) {
		if p := s.Conn().RemotePeer(); !g.member(p) {
			// Strangers may knock often; skip the work when debug is off.
			if g.log.Enabled(context.Background(), slog.LevelDebug) {
				g.log.Debug("site DHT: refused a stream from a non-member", logPeer, p, logProto, pid)
			}
			_ = s.Reset()
			return
		}
		handler(s)
	})
}

// noRecords is the validator of a DHT that stores no records.
type noRecords struct{}

func (noRecords) Validate(key string, _ []byte) error {
	return fmt.Errorf("the site DHT stores no records (key %q)", key)
}

func (noRecords) Select(string, [][]byte) (int, error) {
	return 0, errors.New("the site DHT stores no records")
}
