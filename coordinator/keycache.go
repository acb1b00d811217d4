package coordinator

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Installer keys whose signature verified, remembered by their text.
//
// Every peer of an installation brings the same key, and an enrollment
// verified its signature twice (the stranger's hello before admission,
// enroll after): two Ed25519 verifications, 10 % of the coordinator's CPU
// per registration (BenchmarkRegistrations' profile, 1,000 peers). Parsing
// and the signature are a function of the key's text alone, so a key that
// verified once is remembered; the site, the key's window and the installer
// record (deleted installers) are still checked at every use. Only keys
// signed by a site are kept (a stranger's forged or garbled keys fail the
// signature and are not), at most verifiedKeysMax, so a stranger cannot
// grow it: it would need keys signed by this site's key.
var verifiedKeys = &keyCache{keys: make(map[string]*installerkey.Key)}

// verifiedKeysMax bounds the remembered keys; past it the cache starts over.
const verifiedKeysMax = 256

type keyCache struct {
	mu   sync.Mutex
	keys map[string]*installerkey.Key
}

// lookup is the remembered key of raw, or nil. The key is shared: read it,
// never change it.
func (c *keyCache) lookup(raw string) *installerkey.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys[raw]
}

// parse is installerkey.Parse, remembered.
func (c *keyCache) parse(raw string) (*installerkey.Key, error) {
	if k := c.lookup(raw); k != nil {
		return k, nil
	}
	k, err := installerkey.Parse(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= verifiedKeysMax {
		clear(c.keys)
	}
	c.keys[raw] = k
	return k, nil
}

// checkHelloKeyCached is checkHelloKey for a key whose signature verified
// before: only the site and window are checked again. A key not seen yet
// takes the full check (enroll remembers it once the peer is admitted).
func (s *Service) checkHelloKeyCached(remote peer.ID, hello *pb.PeerHello) error {
	k := verifiedKeys.lookup(hello.GetInstallerKey())
	if k == nil {
		return s.checkHelloKey(remote, hello)
	}
	err := k.Check(installerkey.VerifyOptions{Site: s.siteID, Now: s.clock.Now()})
	if err != nil && s.peers.tombstone(remote) != nil {
		return nil // removed: told to uninstall whatever its key
	}
	return err
}

// enrollKey is CheckInstallerKey with the key's signature remembered: this
// site, the key's window, and the installer record (unknown or deleted
// installers are refused as revoked), checked at every enrollment.
func (s *Service) enrollKey(raw string) (*pb.Installer, error) {
	k, err := verifiedKeys.parse(raw)
	if err != nil {
		return nil, err
	}
	if err := k.Check(installerkey.VerifyOptions{Site: s.siteID, Now: s.clock.Now()}); err != nil {
		return nil, err
	}
	return s.liveInstaller(k.Body.GetInstallerId())
}
