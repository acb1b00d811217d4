package member

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// Daemon says which daemon member (a relay, a jumpoint) enrolls: its
// files, the role its invite must be for, and its name in messages and
// commands ("relay" for `jumpmesh relay invite NAME`).
type Daemon struct {
	Files Files
	Role  pb.Role
	Party string
}

// Enroll returns what the daemon runs as: its site and its key. It logs
// in with the invite on the first run (coordinator and invite are needed
// then only). A directory already enrolled ignores the invite, so a
// service unit that still carries it keeps working after the first start.
// A directory enrolled with another role's invite, or an invite for
// another role, is refused with what to do. Enrolling uses a dial-only
// member client that is closed before Enroll returns: the daemon then
// talks to the coordinator from its serving host alone, so the coordinator
// (and its DHT) sees one connection per daemon.
func (d Daemon) Enroll(ctx context.Context, coordinator, invite string, log *slog.Logger) (peer.AddrInfo, crypto.PrivKey, error) {
	c, err := d.client(ctx, coordinator, invite, log)
	if err != nil {
		return peer.AddrInfo{}, nil, err
	}
	site := c.SiteInfo()
	if err := c.Close(); err != nil {
		return peer.AddrInfo{}, nil, err
	}
	key, err := d.Files.LoadKey()
	if err != nil {
		return peer.AddrInfo{}, nil, fmt.Errorf("%s key: %w", d.Party, err)
	}
	return site, key, nil
}

// client opens the daemon's member client, logging in on the first run.
func (d Daemon) client(ctx context.Context, coordinator, invite string, log *slog.Logger) (*Client, error) {
	want := words.RoleName(d.Role)
	c, err := Open(d.Files, mesh.HostConfig{})
	if err == nil {
		if role := c.Role(); role != "" && role != want {
			c.Close()
			return nil, catalog.Errorf(catalog.CodeInvalidArgument,
				"(the %s data directory %s is enrolled as %s, a %s: remove it and enroll with a code from `jumpmesh %s invite NAME`)",
				d.Party, d.Files.Dir, c.UserName(), role, d.Party)
		}
		if invite != "" {
			log.Warn(d.Party+" already enrolled; ignoring the invite", "user", c.UserName(), "data", d.Files.Dir)
		}
		return c, nil
	}
	if catalog.CodeOf(err) != catalog.CodeNotLoggedIn {
		return nil, fmt.Errorf("opening %s data directory %s: %w", d.Party, d.Files.Dir, err)
	}
	if invite == "" {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument,
			"(the %s data directory %s is not enrolled yet: run it once with --coordinator ADDR --invite CODE from `jumpmesh %s invite NAME`)",
			d.Party, d.Files.Dir, d.Party)
	}
	c, resp, err := Login(ctx, d.Files, coordinator, invite, mesh.HostConfig{})
	if err != nil {
		return nil, fmt.Errorf("enrolling %s with %s: %w", d.Party, coordinator, err)
	}
	if role := resp.GetUser().GetRole(); role != d.Role {
		// Another role's invite bound this directory's key to that user;
		// the coordinator would refuse it the daemon's requests anyway.
		// Say so now, and what to do, rather than fail at the first fetch.
		c.Close()
		return nil, catalog.Errorf(catalog.CodeInvalidArgument,
			"(the invite was for %s, a %s, and this directory's key is now that user's: remove %s and enroll with a code from `jumpmesh %s invite NAME`)",
			resp.GetUser().GetName(), words.RoleName(role), d.Files.Dir, d.Party)
	}
	log.Info(d.Party+" enrolled", "user", resp.GetUser().GetName(), "site", c.Site())
	return c, nil
}
