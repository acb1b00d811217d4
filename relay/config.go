package relay

import (
	"log/slog"
	"net"
	"strconv"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Defaults for a zero Config.
const (
	// DefaultPort is the relay's TCP and UDP (QUIC) port, next to the
	// coordinator's 4830–4831.
	DefaultPort = 4832
	// DefaultHTTPAddr serves /metrics and /healthz on the local host only.
	DefaultHTTPAddr = "127.0.0.1:4833"
	// DefaultSplicePort is the TCP port of the splice listener, which
	// carries relayed bulk connections (splice.go): the first free of the
	// site's ports (4834 is a jumpoint's metrics, 4835 its peer link), so a
	// relay and a jumpoint can share a host.
	DefaultSplicePort = 4836
	// DefaultRefresh is how often the ACL is fetched when neither the
	// Config nor the coordinator says.
	DefaultRefresh = 30 * time.Second
	// fetchTimeout bounds one ACL fetch, so a hung coordinator cannot
	// stall the refresher past the next period.
	fetchTimeout = 20 * time.Second
)

// DefaultListen are the addresses a relay listens on: TCP and QUIC on
// DefaultPort, IPv4 and IPv6.
var DefaultListen = []string{
	"/ip4/0.0.0.0/tcp/4832", "/ip4/0.0.0.0/udp/4832/quic-v1",
	"/ip6/::/tcp/4832", "/ip6/::/udp/4832/quic-v1",
}

// Log field names.
const (
	logReason  = "reason"
	logPeer    = "peer"
	logDest    = "dest"
	logAddr    = "addr"
	logError   = "error"
	logUser    = "user"
	logSite    = "site"
	logData    = "data"
	logRelay   = "relay"
	logAddrs   = "addrs"
	logHTTP    = "http"
	logMembers = "members"
	logAge     = "age"
	logFiles   = "files"
)

// Config runs a relay. The zero value of every field but DataDir means the
// default.
type Config struct {
	// DataDir holds the relay's key (relay.key, mode 0600) and its
	// enrollment (relay.json): a relay is enrolled like a user with the
	// role relay, as a site member (mesh/member). A directory made by an
	// older release (technician.key, console.json) is renamed on start.
	// Required.
	DataDir string
	// Coordinator is the coordinator's address (ending in /p2p/<site>) and
	// Invite the one-time code from `jumpmesh relay invite`; both are only
	// needed on the first run, which enrolls. Later runs read DataDir.
	Coordinator string
	Invite      string
	// Listen are multiaddrs to listen on (DefaultListen if none).
	Listen []string
	// Announce, when set, replace the addresses the relay reports to the
	// coordinator and puts in reservations: a relay behind port forwarding
	// or a cloud 1:1 NAT announces its public address.
	Announce []string
	// HTTPAddr serves /metrics and /healthz (DefaultHTTPAddr if empty;
	// "off" disables).
	HTTPAddr string
	// SpliceAddr is the splice listener's TCP address (host:port), which
	// carries relayed bulk connections (splice.go); "off" disables it: the
	// relay does not serve the slot protocol, and relayed forwards stay on
	// their channel. Empty: port
	// DefaultSplicePort on the host of the first TCP listen address (all
	// addresses when that is unspecified), or a port of the kernel's
	// choosing when that listen address has port 0 (tests); if that default
	// cannot listen the relay logs it and runs without. A relay behind port
	// forwarding forwards this port too, to the same number.
	SpliceAddr string
	// Resources bound what the relay spends; zero fields are defaults.
	Resources Resources
	// Refresh is how often the ACL is fetched; zero follows the
	// coordinator's answer (DefaultRefresh if it gives none).
	Refresh time.Duration
	Logger  *slog.Logger
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

// spliceAddr is SpliceAddr or its default ("off" when there is no TCP
// listen address).
func (c *Config) spliceAddr() string {
	if c.SpliceAddr != "" {
		return c.SpliceAddr
	}
	for _, s := range c.listen() {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		port, err := a.ValueForProtocol(ma.P_TCP)
		ip, ipErr := manet.ToIP(a)
		if err != nil || ipErr != nil {
			continue
		}
		host := ""
		if !ip.IsUnspecified() {
			host = ip.String()
		}
		if port == "0" {
			return net.JoinHostPort(host, "0")
		}
		return net.JoinHostPort(host, strconv.Itoa(DefaultSplicePort))
	}
	return "off"
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
		return catalog.Errorf(catalog.CodeInvalidArgument, "(a relay needs a data directory)")
	case c.Invite != "" && c.Coordinator == "":
		return catalog.Errorf(catalog.CodeInvalidArgument, "(enrolling a relay with an invite needs the coordinator's address too)")
	case c.Refresh < 0:
		return catalog.Errorf(catalog.CodeInvalidArgument, "(the ACL refresh period must not be negative)")
	}
	if err := c.Resources.withDefaults().validate(); err != nil {
		return catalog.Errorf(catalog.CodeOutOfRange, "(%w)", err)
	}
	return nil
}
