package member

import (
	"context"
	"fmt"
	"log/slog"

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

// Serve returns the daemon's member client, on the host it serves from:
// hc builds that host (listen addresses, resource managers; its Key is the
// daemon's, set here). It logs in with the invite on the first run
// (coordinator and invite are needed then only). A directory already
// enrolled ignores the invite, so a service unit that still carries it
// keeps working after the first start. A directory enrolled with another
// role's invite, or an invite for another role, is refused with what to
// do. A coordinator address given to a directory already enrolled is
// dialled too (the site's coordinators may have moved while the daemon
// was down); it must name the site the directory is enrolled in. The
// daemon talks to the coordinator from its serving host alone, so
// the coordinator (and its DHT) sees one connection per daemon; its calls
// take the members' lane first (lane.go), keep every coordinator address
// and relay the answers carry, and ask the site's relays where the site is
// when no address it knows answers (findsite.go). log receives what the
// client does on its own (a lookup through the relays).
func (d Daemon) Serve(ctx context.Context, coordinator, invite string, log *slog.Logger, hc mesh.HostConfig) (*Client, error) {
	c, err := d.client(ctx, coordinator, invite, log, hc)
	if err != nil {
		return nil, err
	}
	c.log = log
	return c, nil
}

// client opens the daemon's member client, logging in on the first run.
func (d Daemon) client(ctx context.Context, coordinator, invite string, log *slog.Logger, hc mesh.HostConfig) (*Client, error) {
	want := words.RoleName(d.Role)
	c, err := Open(d.Files, hc)
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
		if coordinator != "" {
			if err := c.hint(coordinator); err != nil {
				c.Close()
				return nil, err
			}
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
	c, resp, err := Login(ctx, d.Files, coordinator, invite, hc)
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
