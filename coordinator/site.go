package coordinator

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Files of a site's data directory.
const (
	siteKeyFile    = "site.key"
	siteConfigFile = "site.json"
	storeDir       = "db"
)

// Default addresses of a coordinator.
var (
	DefaultListenAddrs = []string{"/ip4/0.0.0.0/tcp/4830", "/ip4/0.0.0.0/udp/4830/quic-v1", "/ip6/::/tcp/4830", "/ip6/::/udp/4830/quic-v1"}
	DefaultHTTPAddr    = "127.0.0.1:4831"
)

// SiteConfig is site.json: what `coordinator init` decided and `run` reads.
type SiteConfig struct {
	Version int    `json:"version"`
	SiteID  string `json:"site_id"`
	// Listen are the multiaddrs the coordinator listens on.
	Listen []string `json:"listen"`
	// PublicAddrs, when set, are the addresses peers and consoles are told
	// to use (installer keys carry them). Otherwise the listen addresses are.
	PublicAddrs []string `json:"public_addrs,omitempty"`
	// Relays are relay multiaddrs (with /p2p/) handed to peers in keys.
	Relays []string `json:"relays,omitempty"`
	// HTTPAddr serves /metrics and /healthz; "off" disables it.
	HTTPAddr string `json:"http_addr"`
}

// Site is an opened data directory: identity and configuration.
type Site struct {
	Dir    string
	Key    crypto.PrivKey
	ID     peer.ID
	Config SiteConfig
}

// InitConfig is what `coordinator init` takes. Zero values mean defaults.
type InitConfig struct {
	DataDir     string
	Listen      []string
	PublicAddrs []string
	Relays      []string
	HTTPAddr    string
	// AdminName is the first administrator's user name ("admin").
	AdminName string
	// InviteValidFor is how long the first invite is valid (24h).
	InviteValidFor time.Duration
	Clock          mesh.Clock
}

// InitResult is what a new site tells its creator.
type InitResult struct {
	SiteID     peer.ID
	Admin      string
	InviteCode string
	Expires    time.Time
	// LoginAddrs are full multiaddrs (with /p2p/) to log in with.
	LoginAddrs []ma.Multiaddr
}

// InitSite creates a site in cfg.DataDir: the site key, site.json, the store
// and the first administrator's invite. It refuses a directory that already
// holds a site, and removes what it created if any step fails.
func InitSite(cfg InitConfig) (res *InitResult, err error) {
	if cfg.DataDir == "" {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "no data directory given (--data).")
	}
	sc, err := newSiteConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{siteKeyFile, siteConfigFile, storeDir} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, f)); err == nil {
			return nil, catalog.Errorf(catalog.CodeSiteExists, "(%s exists in %s)", f, cfg.DataDir)
		}
	}
	created, err := mkdirTracked(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	defer func() {
		if err != nil {
			cleanupInit(cfg.DataDir, created)
		}
	}()
	key, err := mesh.CreateKeyFile(filepath.Join(cfg.DataDir, siteKeyFile))
	if err != nil {
		return nil, fmt.Errorf("creating site key: %w", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	sc.SiteID = id.String()
	st, err := OpenStore(filepath.Join(cfg.DataDir, storeDir), StoreOptions{})
	if err != nil {
		return nil, err
	}
	clock := cfg.Clock
	if clock == nil {
		clock = mesh.SystemClock{}
	}
	admin := cfg.AdminName
	if admin == "" {
		admin = "admin"
	}
	validFor := cfg.InviteValidFor
	if validFor == 0 {
		validFor = 24 * time.Hour
	}
	code, expires, err := bootstrapAdmin(st, admin, validFor, clock.Now())
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing store: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	if err := writeSiteConfig(cfg.DataDir, sc); err != nil {
		return nil, err
	}
	site := &Site{Dir: cfg.DataDir, Key: key, ID: id, Config: *sc}
	return &InitResult{SiteID: id, Admin: admin, InviteCode: code, Expires: expires, LoginAddrs: site.LoginAddrs(nil)}, nil
}

func newSiteConfig(cfg InitConfig) (*SiteConfig, error) {
	sc := &SiteConfig{Version: 1, Listen: cfg.Listen, PublicAddrs: cfg.PublicAddrs, Relays: cfg.Relays, HTTPAddr: cfg.HTTPAddr}
	if len(sc.Listen) == 0 {
		sc.Listen = DefaultListenAddrs
	}
	if sc.HTTPAddr == "" {
		sc.HTTPAddr = DefaultHTTPAddr
	}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	return sc, nil
}

func (sc *SiteConfig) validate() error {
	if _, err := mesh.ParseMultiaddrs(sc.Listen); err != nil {
		return err
	}
	if _, err := mesh.ParseMultiaddrs(sc.PublicAddrs); err != nil {
		return err
	}
	relays, err := mesh.ParseMultiaddrs(sc.Relays)
	if err != nil {
		return err
	}
	for _, r := range relays {
		if _, err := peer.AddrInfoFromP2pAddr(r); err != nil {
			return catalog.Errorf(catalog.CodeInvalidArgument, "relay address %s must end in /p2p/<relay peer ID>.", r)
		}
	}
	return nil
}

func writeSiteConfig(dir string, sc *SiteConfig) error {
	return mesh.WriteJSONFile(filepath.Join(dir, siteConfigFile), sc, 0o600)
}

// mkdirTracked creates dir (0700) if missing and reports whether it did.
func mkdirTracked(dir string) (bool, error) {
	_, err := os.Stat(dir)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, os.MkdirAll(dir, 0o700)
}

func cleanupInit(dir string, createdDir bool) {
	if createdDir {
		os.RemoveAll(dir)
		return
	}
	for _, f := range []string{siteKeyFile, siteConfigFile, storeDir} {
		os.RemoveAll(filepath.Join(dir, f))
	}
}

// OpenSite reads a data directory made by InitSite.
func OpenSite(dir string) (*Site, error) {
	var sc SiteConfig
	err := mesh.ReadJSONFile(filepath.Join(dir, siteConfigFile), &sc)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, catalog.Errorf(catalog.CodeSiteNotFound, "(no %s in %s)", siteConfigFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading site config: %w", err)
	}
	if err := sc.validate(); err != nil {
		return nil, fmt.Errorf("site config %s: %w", filepath.Join(dir, siteConfigFile), err)
	}
	key, err := mesh.LoadKeyFile(filepath.Join(dir, siteKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading site key: %w", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if sc.SiteID != "" && sc.SiteID != id.String() {
		return nil, fmt.Errorf("site config names site %s but the site key is %s", sc.SiteID, id)
	}
	return &Site{Dir: dir, Key: key, ID: id, Config: sc}, nil
}

// StorePath is where the site's Badger database lives.
func (s *Site) StorePath() string { return filepath.Join(s.Dir, storeDir) }

// AdvertisedAddrs are the addresses peers and consoles should dial: the
// public addresses if configured, else the listening (actual, when known)
// ones, with unspecified IPs (0.0.0.0, ::) expanded to this machine's
// interface addresses and unknown ports (0) left out.
func (s *Site) AdvertisedAddrs(actual []ma.Multiaddr) []ma.Multiaddr {
	if len(s.Config.PublicAddrs) > 0 {
		addrs, _ := mesh.ParseMultiaddrs(s.Config.PublicAddrs)
		return addrs
	}
	if len(actual) > 0 {
		return actual
	}
	addrs, _ := mesh.ParseMultiaddrs(s.Config.Listen)
	if ifaces, err := manet.InterfaceMultiaddrs(); err == nil {
		if resolved, err := manet.ResolveUnspecifiedAddresses(addrs, ifaces); err == nil {
			addrs = resolved
		}
	}
	var out, loopback []ma.Multiaddr
	for _, a := range addrs {
		switch {
		case hasPortZero(a) || manet.IsIP6LinkLocal(a):
			// not dialable as written
		case manet.IsIPLoopback(a):
			loopback = append(loopback, a)
		default:
			out = append(out, a)
		}
	}
	// Technicians are usually on other machines: routable addresses first.
	return append(out, loopback...)
}

func hasPortZero(a ma.Multiaddr) bool {
	for _, code := range []int{ma.P_TCP, ma.P_UDP} {
		if v, err := a.ValueForProtocol(code); err == nil && v == "0" {
			return true
		}
	}
	return false
}

// LoginAddrs are AdvertisedAddrs with /p2p/<site ID> appended.
func (s *Site) LoginAddrs(actual []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range s.AdvertisedAddrs(actual) {
		full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: s.ID, Addrs: []ma.Multiaddr{a}})
		if err == nil {
			out = append(out, full...)
		}
	}
	return out
}

// Relays are the configured relay addresses.
func (s *Site) Relays() []ma.Multiaddr {
	addrs, _ := mesh.ParseMultiaddrs(s.Config.Relays)
	return addrs
}
