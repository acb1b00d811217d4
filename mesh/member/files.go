package member

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Files are where a member keeps its identity: a directory and the names
// of its two files in it.
type Files struct {
	Dir string
	// Key is the name of the private key file, e.g. "relay.key".
	Key string
	// Config is the name of the config file, e.g. "relay.json".
	Config string
}

// KeyPath is the key file's path.
func (f Files) KeyPath() string { return filepath.Join(f.Dir, f.Key) }

// ConfigPath is the config file's path.
func (f Files) ConfigPath() string { return filepath.Join(f.Dir, f.Config) }

// Config is the member's config file: which site it is enrolled in and as
// whom.
type Config struct {
	Site string `json:"site"`
	// Coordinator are the coordinator's multiaddrs, each ending in /p2p/<site>.
	Coordinator []string `json:"coordinator"`
	User        string   `json:"user"`
	// Role is the user's role at login ("technician", "relay", ...); empty
	// in files written before it was recorded.
	Role string `json:"role,omitempty"`
	// Lane is the coordinator's members' lane (TCP multiaddrs without
	// /p2p/, lane.go) as its last answer told it; empty: none.
	Lane []string `json:"lane,omitempty"`
	// Relays are the site's relays (multiaddrs with /p2p/) as the last
	// jump or ACL named them: asked where the site is when no coordinator
	// address answers (findsite.go).
	Relays []string `json:"relays,omitempty"`
}

// SiteInfo is the coordinator's peer ID and addresses from the config.
func (c *Config) SiteInfo() (peer.AddrInfo, error) {
	addrs, err := mesh.ParseMultiaddrs(c.Coordinator)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil || len(infos) != 1 {
		return peer.AddrInfo{}, errors.New("coordinator addresses must all end in the same /p2p/<site>")
	}
	return infos[0], nil
}

// LoadConfig reads the config file; a missing one is CodeNotLoggedIn.
func (f Files) LoadConfig() (*Config, error) {
	var c Config
	err := mesh.ReadJSONFile(f.ConfigPath(), &c)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, catalog.Errorf(catalog.CodeNotLoggedIn, "(no %s in %s)", f.Config, f.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading member config: %w", err)
	}
	return &c, nil
}

// SaveConfig replaces the config file atomically (mode 0600).
func (f Files) SaveConfig(c *Config) error { return mesh.WriteJSONFile(f.ConfigPath(), c, 0o600) }

// LoadKey reads the key file, refusing one that others may read.
func (f Files) LoadKey() (crypto.PrivKey, error) { return mesh.LoadKeyFile(f.KeyPath()) }

// loadOrCreateKey makes the directory (0700) and the key (0600) if missing.
func (f Files) loadOrCreateKey() (crypto.PrivKey, error) {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating member directory: %w", err)
	}
	return mesh.LoadOrCreateKeyFile(f.KeyPath())
}

// Migrate renames the files named by old to f's names, each file on its
// own, when the old one exists and the new one does not, and says whether
// it renamed anything. Both must be in the same directory. Each rename is
// atomic and the check runs on every start, so a crash between the two
// renames is finished by the next start; a directory that has both names
// keeps the new files and the old ones untouched.
func (f Files) Migrate(old Files) (bool, error) {
	moved := false
	for _, p := range [][2]string{{old.KeyPath(), f.KeyPath()}, {old.ConfigPath(), f.ConfigPath()}} {
		from, to := p[0], p[1]
		if from == to {
			continue
		}
		if _, err := os.Lstat(to); err == nil || !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(from, to); err != nil {
			return moved, fmt.Errorf("renaming %s to %s: %w", from, filepath.Base(to), err)
		}
		moved = true
	}
	return moved, nil
}
