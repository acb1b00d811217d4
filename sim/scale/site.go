package scale

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// SiteConfig runs a site for the engine. Zero values are defaults.
type SiteConfig struct {
	// Dir receives the coordinator's data directory and the admin's
	// console home. Required.
	Dir string
	// ConnectionRate is the site's connection-rate (1–300 per second), the
	// pace at which the coordinator admits (re)connecting peers. 0 lifts
	// admission altogether, so that a storm measures the coordinator.
	ConnectionRate int
	// Start is the injected clock's starting time (default: now, to the
	// second).
	Start  time.Time
	Logger *slog.Logger
}

// Site is a real coordinator — a real Badger in Dir, a real libp2p host on
// fixed loopback TCP and QUIC ports, an injected manual clock — with its
// first administrator logged in from a real console and an installer key.
type Site struct {
	cfg   SiteConfig
	Clock *mesh.ManualClock
	Coord *coordinator.Coordinator
	Admin *console.Client
	// Key is an installer key of the site, valid for a year on Clock.
	Key string
	// listen are the ports the first start got, so that consoles and
	// peers find a restarted coordinator again.
	listen []string
}

// NewSite inits a site in cfg.Dir, runs its coordinator and logs in the
// administrator. Close stops them.
func NewSite(ctx context.Context, cfg SiteConfig) (_ *Site, err error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("site: no directory")
	}
	if cfg.ConnectionRate < 0 || cfg.ConnectionRate > 300 {
		return nil, fmt.Errorf("site: connection rate %d is outside 0–300", cfg.ConnectionRate)
	}
	start := cfg.Start
	if start.IsZero() {
		start = time.Now().UTC().Truncate(time.Second)
	}
	s := &Site{cfg: cfg, Clock: mesh.NewManualClock(start)}
	// Ports chosen by the system; Start keeps them for restarts.
	listen := []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	res, err := coordinator.InitSite(coordinator.InitConfig{DataDir: s.DataDir(), Clock: s.Clock, HTTPAddr: "off", Listen: listen})
	if err != nil {
		return nil, fmt.Errorf("init site: %w", err)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Admin, _, err = console.Login(ctx, filepath.Join(cfg.Dir, "admin"), s.Coord.LoginAddrs()[0].String(), res.InviteCode); err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	if cfg.ConnectionRate > 0 {
		set := &pb.SettingsSetRequest{Values: map[string]string{"connection-rate": fmt.Sprint(cfg.ConnectionRate)}}
		if _, err := s.Do(ctx, &pb.Request{Body: &pb.Request_SettingsSet{SettingsSet: set}}); err != nil {
			return nil, err
		}
	}
	create := &pb.InstallerCreateRequest{Defaults: &pb.InstallerDefaults{Tag: "scale"}, ValidForSeconds: int64(365 * 24 * time.Hour / time.Second)}
	resp, err := s.Do(ctx, &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: create}})
	if err != nil {
		return nil, fmt.Errorf("installer key: %w", err)
	}
	in := resp.GetInstaller()
	s.Key = in.GetKey()
	return s, nil
}

// DataDir is the coordinator's data directory.
func (s *Site) DataDir() string { return filepath.Join(s.cfg.Dir, "site") }

// Start runs the coordinator (again, after Stop, on the same ports).
func (s *Site) Start() error {
	admission := -1.0 // lifted
	if s.cfg.ConnectionRate > 0 {
		admission = 0 // the site's connection-rate
	}
	c, err := coordinator.New(coordinator.Config{DataDir: s.DataDir(), Clock: s.Clock, HTTPAddr: "off",
		Listen: s.listen, AdmissionRate: admission, Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("starting coordinator: %w", err)
	}
	s.Coord = c
	if s.listen == nil {
		lane := c.LaneAddrs() // the coordinator listens there again by itself
		for _, a := range c.Host().Network().ListenAddresses() {
			if !slices.ContainsFunc(lane, a.Equal) {
				s.listen = append(s.listen, a.String())
			}
		}
	}
	return nil
}

// Stop stops the coordinator.
func (s *Site) Stop() error {
	if err := s.Coord.Close(); err != nil {
		return fmt.Errorf("stopping coordinator: %w", err)
	}
	return nil
}

// Online is how many peers the coordinator has online.
func (s *Site) Online() int {
	_, online := s.Coord.Service().PeerCounts()
	return online
}

// WaitOnline polls until the coordinator has exactly n peers online.
func (s *Site) WaitOnline(ctx context.Context, n int) error {
	return poll(ctx, func() bool { return s.Online() == n }, func() string {
		return fmt.Sprintf("%d of %d peers online", s.Online(), n)
	})
}

// Do sends req as the administrator to the coordinator's control service
// in this process: no control-message size limit, and none of the wire's
// hazards when the wire is not what is measured.
func (s *Site) Do(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	return s.Coord.Service().Handle(ctx, s.Admin.ID(), req)
}

// Peers lists the peers the administrator sees for query, deleted ones
// too (through Do).
func (s *Site) Peers(ctx context.Context, query string) ([]*pb.PeerView, error) {
	resp, err := s.Do(ctx, &pb.Request{Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{Query: query, IncludeDeleted: true}}})
	if err != nil {
		return nil, err
	}
	return coordinator.PeerListViews(resp.GetPeers())
}

// Settings are the site's settings (through Do).
func (s *Site) Settings(ctx context.Context) (*pb.Settings, error) {
	resp, err := s.Do(ctx, &pb.Request{Body: &pb.Request_SettingsShow{SettingsShow: &pb.Empty{}}})
	return resp.GetSettings(), err
}

// Close logs the administrator out and stops the coordinator.
func (s *Site) Close() error {
	if s.Admin != nil {
		s.Admin.Close()
	}
	return s.Coord.Close()
}

// poll checks done every 10 ms until it holds or ctx ends; state says
// where things stand for the error, and ctx's cause why it ended (a
// fleet process that died, or the deadline).
func poll(ctx context.Context, done func() bool, state func() string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", state(), context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}
