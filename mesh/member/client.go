package member

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// Client is an enrolled member's connection to its coordinator: a libp2p
// host with the member's key, and the site it is enrolled in.
type Client struct {
	host host.Host
	// dials narrow the host's dials to the coordinator (TCP; its
	// members' lane first: lane.go); connectMu makes one connect at a time.
	dials     *mesh.CoordinatorDials
	connectMu sync.Mutex
	// files are where config is kept ("" Dir until a login is recorded);
	// mu guards site and config, which follow the coordinators' addresses
	// each answer carries (coordinators.go).
	files  Files
	mu     sync.Mutex
	site   peer.AddrInfo
	config *Config
	// laneOff: the lane closed this member's connection; it dials the
	// other addresses only until an answer tells the lane again (lane.go).
	laneOff bool
	// foundAt is when this member last asked its relays where the site
	// is; siteServers, when set, names more servers of the site's DHT to
	// ask (findsite.go).
	foundAt     time.Time
	siteServers func() []peer.AddrInfo
	// log receives what the client does on its own (a daemon's; nil for
	// a console, which says what failed in its errors).
	log *slog.Logger
}

// Open reads the member's files and starts a host with its key, built from
// hc (its Key is set here). It does not contact the coordinator yet. A
// directory with no config file is CodeNotLoggedIn.
func Open(f Files, hc mesh.HostConfig) (*Client, error) {
	cfg, err := f.LoadConfig()
	if err != nil {
		return nil, err
	}
	site, err := cfg.SiteInfo()
	if err != nil {
		return nil, fmt.Errorf("member config %s: %w", f.ConfigPath(), err)
	}
	hc.Key, err = f.LoadKey()
	if err != nil {
		return nil, err
	}
	c, err := newClient(hc, site, cfg)
	if err != nil {
		return nil, err
	}
	c.files = f
	return c, nil
}

func newClient(hc mesh.HostConfig, site peer.AddrInfo, cfg *Config) (*Client, error) {
	// Over TCP to the coordinator, as peers (mesh.CoordinatorOverTCP says
	// why: the TCP mapping identify tells is what hole punching offers).
	dials := mesh.NewCoordinatorDials(site)
	hc.Extra = append(slices.Clip(hc.Extra), dials.Option())
	h, err := mesh.NewHost(hc)
	if err != nil {
		return nil, err
	}
	h.Peerstore().AddAddrs(site.ID, site.Addrs, peerstore.PermanentAddrTTL)
	return &Client{host: h, dials: dials, site: site, config: cfg}, nil
}

// Login makes (or reuses) the member's key, redeems the invite code at the
// coordinator at addr (a multiaddr ending in /p2p/<site>) on a host built
// from hc, and records the site, the user and the role in the config file.
// On error the directory keeps only the key.
func Login(ctx context.Context, f Files, addr, code string, hc mesh.HostConfig) (*Client, *pb.LoginResponse, error) {
	info, err := parseCoordinator(addr)
	if err != nil {
		return nil, nil, err
	}
	hc.Key, err = f.loadOrCreateKey()
	if err != nil {
		return nil, nil, err
	}
	c, err := newClient(hc, *info, &Config{Site: info.ID.String(), Coordinator: []string{addr}})
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
	c.config.Role = words.RoleName(lr.GetUser().GetRole())
	if err := f.SaveConfig(c.config); err != nil {
		c.Close()
		return nil, nil, err
	}
	// Every coordinator of the site, from now on kept with the login
	// address (coordinators.go).
	c.files = f
	c.learn(append(lr.GetSiteAddrs(), resp.GetCoordinatorAddrs()...))
	return c, lr, nil
}

// Call sends one control request to the coordinator.
func (c *Client) Call(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	resp, err := control.Call(ctx, c.host, c.site.ID, req)
	// The connection ended before the request left: a coordinator
	// restarting (the start of a reconnect storm, when the lane matters
	// most), or the lane closing a key that is no user's (a technician
	// removed, lane.go). Once more as before, the lane first; if that
	// ends the same way, once more without the lane, where the
	// coordinator says why. The request was not sent: nothing runs twice.
	for retry := 0; retry < 2 && err != nil && control.NotSent(err); retry++ {
		if retry == 1 && !c.dropLane() {
			break
		}
		_ = c.host.Network().ClosePeer(c.site.ID)
		if err := c.connect(ctx); err != nil {
			return nil, err
		}
		resp, err = control.Call(ctx, c.host, c.site.ID, req)
	}
	if err == nil {
		c.learn(resp.GetCoordinatorAddrs())
		c.learnLane(resp.GetMemberLane())
		_, _ = c.LearnRelays(resp.GetJump().GetRelays())
		_, _ = c.LearnRelays(resp.GetRelayAcl().GetRelays())
	}
	return resp, err
}

// ID is the member's peer ID (its key).
func (c *Client) ID() peer.ID { return c.host.ID() }

// Site is the site's peer ID.
func (c *Client) Site() peer.ID { return c.site.ID }

// SiteInfo is the coordinator's peer ID and the addresses this member
// knows it at.
func (c *Client) SiteInfo() peer.AddrInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return peer.AddrInfo{ID: c.site.ID, Addrs: slices.Clone(c.site.Addrs)}
}

// UserName is the user name this member logged in as.
func (c *Client) UserName() string { return c.config.User }

// Role is the role this member logged in with ("" if its config file
// predates the role being recorded).
func (c *Client) Role() string { return c.config.Role }

// Host is the member's libp2p host.
func (c *Client) Host() host.Host { return c.host }

// Close stops the member's host.
func (c *Client) Close() error { return c.host.Close() }

// CoordinatorAddr is the coordinator address this member logged in with.
func (c *Client) CoordinatorAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.config.Coordinator) > 0 {
		return c.config.Coordinator[0]
	}
	return ""
}
