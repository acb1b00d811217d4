package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Client talks to the coordinator of the site the console is logged in to.
type Client struct {
	host   host.Host
	site   peer.AddrInfo
	config *Config
}

// Open loads the console home and starts a dial-only libp2p host with the
// technician's key. It does not contact the coordinator yet.
func Open(home string) (*Client, error) {
	cfg, err := loadConfig(home)
	if err != nil {
		return nil, err
	}
	addrs, err := mesh.ParseMultiaddrs(cfg.Coordinator)
	if err != nil {
		return nil, fmt.Errorf("console config: %w", err)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil || len(infos) != 1 {
		return nil, fmt.Errorf("console config %s: coordinator addresses must all end in the same /p2p/<site>", filepath.Join(home, configFile))
	}
	key, err := mesh.LoadKeyFile(filepath.Join(home, keyFile))
	if err != nil {
		return nil, err
	}
	return newClient(key, infos[0], cfg)
}

func newClient(key crypto.PrivKey, site peer.AddrInfo, cfg *Config) (*Client, error) {
	// A console listens (on ports the system picks) so that hole punching
	// can turn a relayed connection to a peer into a direct one.
	listen, err := mesh.ParseMultiaddrs(consoleListen)
	if err != nil {
		return nil, err
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, RelayClient: true, ListenAddrs: listen})
	if err != nil {
		return nil, err
	}
	h.Peerstore().AddAddrs(site.ID, site.Addrs, peerstore.PermanentAddrTTL)
	return &Client{host: h, site: site, config: cfg}, nil
}

var consoleListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/tcp/0", "/ip6/::/udp/0/quic-v1"}

// Login makes (or reuses) the technician's key in home, redeems the invite
// code at the coordinator at addr (a multiaddr ending in /p2p/<site>), and
// records the site in home. On error home keeps only the key.
func Login(ctx context.Context, home, addr, code string) (*Client, *pb.LoginResponse, error) {
	target, err := ma.NewMultiaddr(addr)
	if err != nil {
		return nil, nil, mesh.Errorf(mesh.CodeInvalidArgument, "%q is not a multiaddr: %v", addr, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(target)
	if err != nil {
		return nil, nil, mesh.Errorf(mesh.CodeInvalidArgument, "The coordinator address %s must end in /p2p/<site peer ID> (coordinator init prints it).", addr)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating console home: %w", err)
	}
	key, err := mesh.LoadOrCreateKeyFile(filepath.Join(home, keyFile))
	if err != nil {
		return nil, nil, err
	}
	c, err := newClient(key, *info, &Config{Site: info.ID.String(), Coordinator: []string{addr}})
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.Call(ctx, &pb.Request{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: code}}})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	lr := resp.GetLogin()
	c.config.User = lr.GetUser().GetName()
	if err := saveConfig(home, c.config); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, lr, nil
}

// Call sends one control request to the coordinator.
func (c *Client) Call(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	if c.host.Network().Connectedness(c.site.ID) != network.Connected {
		if err := c.host.Connect(ctx, c.site); err != nil {
			return nil, mesh.Errorf(mesh.CodeCoordinatorDown, "(%s at %v): %w", c.site.ID, c.site.Addrs, err)
		}
	}
	return mesh.Call(ctx, c.host, c.site.ID, req)
}

// ID is the console's peer ID (its technician key).
func (c *Client) ID() peer.ID { return c.host.ID() }

// Site is the site's peer ID.
func (c *Client) Site() peer.ID { return c.site.ID }

// SiteInfo is the coordinator's peer ID and the addresses this console
// knows it at.
func (c *Client) SiteInfo() peer.AddrInfo { return c.site }

// UserName is the user name this console logged in as.
func (c *Client) UserName() string { return c.config.User }

// Host is the console's libp2p host (sessions use it later).
func (c *Client) Host() host.Host { return c.host }

// Close stops the console's host.
func (c *Client) Close() error { return c.host.Close() }

// CoordinatorAddr is the coordinator address this console logged in with.
func (c *Client) CoordinatorAddr() string {
	if len(c.config.Coordinator) > 0 {
		return c.config.Coordinator[0]
	}
	return ""
}
