package jumpoint

import (
	"log/slog"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// Defaults for a zero Config.
const (
	// DefaultPort is the jumpoint's TCP and UDP (QUIC) port, after the
	// coordinator's 4830–4831 and the relay's 4832.
	DefaultPort = 4833
	// DefaultHTTPAddr serves /metrics and /healthz on the local host only.
	// It is not 4833: the jumpoint listens there on every interface.
	DefaultHTTPAddr = "127.0.0.1:4834"
	// DefaultRefresh is how often the ACL is fetched when neither the
	// Config nor the coordinator says.
	DefaultRefresh = 30 * time.Second
	// fetchTimeout bounds one ACL fetch, so a hung coordinator cannot
	// stall the refresher past the next period.
	fetchTimeout = 20 * time.Second
)

// DefaultListen are the addresses a jumpoint listens on: TCP and QUIC on
// DefaultPort, on every IPv4 interface (the networks it serves and the one
// consoles reach it on).
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/4833", "/ip4/0.0.0.0/udp/4833/quic-v1"}

// Log field names.
const (
	logReason   = "reason"
	logRemote   = "remote"
	logTarget   = "target"
	logError    = "error"
	logUser     = "user"
	logSite     = "site"
	logData     = "data"
	logJumpoint = "jumpoint"
	logName     = "name"
	logAddrs    = "addrs"
	logHTTP     = "http"
	logPeers    = "peers"
	logAge      = "age"
)

// Config runs a jumpoint. The zero value of every field but DataDir means
// the default.
type Config struct {
	// DataDir holds the jumpoint's key (jumpoint.key, mode 0600) and its
	// enrollment (jumpoint.json): a jumpoint is enrolled like a user with
	// the role jumpoint, as a site member (mesh/member). Required.
	DataDir string
	// Coordinator is the coordinator's address (ending in /p2p/<site>) and
	// Invite the one-time code from `jumpmesh jumpoint invite`; both are
	// only needed on the first run, which enrolls. Later runs read DataDir.
	Coordinator string
	Invite      string
	// Listen are multiaddrs to listen on (DefaultListen if none): on the
	// networks whose hosts the jumpoint serves, and where consoles reach it.
	Listen []string
	// PeerPort is the TCP port of the peer link (mesh/tunnel link.go), on
	// the IP addresses of Listen's TCP addresses: peers installed from a
	// key made after the jumpoint reported it reach the site over a link
	// instead of a libp2p connection. 0: tunnel.DefaultLinkPort, or any
	// free port when those TCP addresses have port 0 (tests); -1: off.
	PeerPort int
	// Announce, when set, replace the addresses the jumpoint reports to
	// the coordinator (which puts them in installer keys that name it).
	Announce []string
	// HTTPAddr serves /metrics and /healthz (DefaultHTTPAddr if empty;
	// "off" disables).
	HTTPAddr string
	// Resources bound what the jumpoint spends; zero fields are defaults.
	Resources Resources
	// Refresh is how often the ACL is fetched; zero follows the
	// coordinator's answer (DefaultRefresh if it gives none).
	Refresh time.Duration
	// Clock is what grants and installer keys are checked against
	// (mesh.SystemClock if nil).
	Clock  mesh.Clock
	Logger *slog.Logger
}

func (c *Config) clock() mesh.Clock {
	if c.Clock == nil {
		return mesh.SystemClock{}
	}
	return c.Clock
}

func (c *Config) listen() []string {
	if len(c.Listen) == 0 {
		return DefaultListen
	}
	return c.Listen
}

func (c *Config) httpAddr() string {
	if c.HTTPAddr == "" {
		return DefaultHTTPAddr
	}
	return c.HTTPAddr
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// check reports a Config that cannot run, in the catalog's words.
func (c *Config) check() error {
	switch {
	case c.DataDir == "":
		return catalog.Errorf(catalog.CodeInvalidArgument, "(a jumpoint needs a data directory)")
	case c.Invite != "" && c.Coordinator == "":
		return catalog.Errorf(catalog.CodeInvalidArgument, "(enrolling a jumpoint with an invite needs the coordinator's address too)")
	case c.PeerPort < -1 || c.PeerPort > 65535:
		return catalog.Errorf(catalog.CodeInvalidArgument, "(peer-link port %d: a TCP port, 0 for the default %d, or -1 for none)", c.PeerPort, tunnel.DefaultLinkPort)
	case c.Refresh < 0:
		return catalog.Errorf(catalog.CodeInvalidArgument, "(the ACL refresh period must not be negative)")
	}
	if err := c.Resources.withDefaults().validate(); err != nil {
		return catalog.Errorf(catalog.CodeOutOfRange, "(%w)", err)
	}
	return nil
}
