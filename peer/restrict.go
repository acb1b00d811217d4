package peer

import (
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/localpolicy"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// What restricts the host's users (restrict-local-uninstall) is the
// site's signed statement (mesh/localpolicy), kept in the user-writable
// state and verified against the site pinned in config.json at every use.
// See doc.go, "Local users".

// restriction is what the local commands and the daemon go by.
type restriction struct {
	restricted bool
	// issued is when the site signed the statement (zero: no valid one).
	issued time.Time
	// why explains a restriction that comes from no valid statement.
	why string
}

// restrictionOf verifies the stored statement raw for peer id. Without a
// valid one, an install by root for another user is restricted (fail
// closed: the user could have deleted it) and any other install is not
// (its user owns every file anyway).
func restrictionOf(dir string, c *Config, raw []byte, id peer.ID) restriction {
	if site, err := peer.Decode(c.Site); err == nil && len(raw) > 0 {
		var lp pb.LocalPolicy
		if proto.Unmarshal(raw, &lp) == nil {
			if body, err := localpolicy.Verify(&lp, site, id); err == nil {
				return restriction{restricted: body.GetRestrictLocalUninstall(), issued: localpolicy.IssuedAt(body)}
			}
		}
	}
	if installedByRoot(dir, c) {
		return restriction{restricted: true, why: "; this peer holds no valid statement from the site yet, and gets one when it next reaches the coordinator"}
	}
	return restriction{}
}

// loadRestriction reads an install directory's restriction.
func loadRestriction(dir string) (restriction, *Config, error) {
	c, err := LoadConfig(dir)
	if err != nil {
		return restriction{}, nil, err
	}
	s, err := LoadState(dir)
	if err != nil {
		return restriction{}, nil, err
	}
	id, err := installPeerID(dir, c)
	if err != nil {
		return restriction{}, nil, err
	}
	return restrictionOf(dir, c, s.LocalPolicy, id), c, nil
}

// installPeerID is the peer's ID as the install recorded it in config.json
// (root's in an install by root), else from peer.key (older installs).
func installPeerID(dir string, c *Config) (peer.ID, error) {
	if c.PeerID != "" {
		return peer.Decode(c.PeerID)
	}
	key, err := mesh.LoadKeyFile(filepath.Join(dir, keyFile))
	if err != nil {
		return "", err
	}
	return peerIDOf(key)
}

// installedByRoot reports an install made by root for another user: its
// config.json is root's, so the user cannot change what it pins.
func installedByRoot(dir string, c *Config) bool {
	uid, ok := ownerOf(filepath.Join(dir, configFile))
	return ok && uid == 0 && c.User != "" && c.User != "root"
}

// disabledFor reports whether the disabled marker counts: root's always;
// anyone else's only while local disable is not restricted, so a marker
// the user made by hand (or before the restriction) does not disable a
// restricted peer.
func disabledFor(dir string, restricted bool) bool {
	uid, exists := ownerOf(filepath.Join(userDir(dir), disabledFile))
	return exists && (!restricted || uid == 0)
}

// IsDisabled reports whether the peer is disabled on its host.
func IsDisabled(dir string) bool {
	r, _, err := loadRestriction(dir)
	if err != nil {
		return false
	}
	return disabledFor(dir, r.restricted)
}

// keepLocalPolicy keeps the statement of a welcome or update if it is the
// site's for this peer: the daemon then goes by it (in memory), whatever
// the file says later.
func (d *Daemon) keepLocalPolicy(s *State, lp *pb.LocalPolicy) {
	if _, err := localpolicy.Verify(lp, d.site.ID, d.ID()); err != nil {
		if lp != nil {
			d.log.Warn("ignoring the local policy statement", "error", err)
		}
		return
	}
	if raw, err := proto.Marshal(lp); err == nil {
		s.LocalPolicy = raw
	}
}

// isDisabled is IsDisabled by the statement the daemon holds (verified
// once per statement: restrictionCache).
func (d *Daemon) isDisabled() bool {
	r := d.sess.restriction.of(d.snapshot().LocalPolicy, func(raw []byte) restriction {
		return restrictionOf(d.cfg.Dir, d.config, raw, d.ID())
	})
	return disabledFor(d.cfg.Dir, r.restricted)
}
