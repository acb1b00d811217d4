package peer

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// Timing of a peer session.
const (
	// connectTimeout: the coordinator keeps a storm's connections in its
	// accept queue until it can serve them (mesh.HostConfig.PatientDials).
	connectTimeout   = mesh.PatientDialTimeout
	replyTimeout     = 30 * time.Second
	sendTimeout      = 10 * time.Second
	minStatsInterval = 5 * time.Second
)

// uninstallOrder is the coordinator's order to uninstall.
type uninstallOrder struct{ reason string }

func (u uninstallOrder) Error() string { return "the coordinator ordered an uninstall: " + u.reason }

var errUninstallOrdered = uninstallOrder{}

func (u uninstallOrder) Is(target error) bool { _, ok := target.(uninstallOrder); return ok }

// session connects, says hello and stays online until the stream ends. It
// reports whether the coordinator welcomed the peer, and how long the
// coordinator asked it to wait before trying again.
func (d *Daemon) session(ctx context.Context) (welcomed bool, retryAfter time.Duration, err error) {
	d.connectMoved(ctx) // a move order's coordinator first (move.go)
	ms, err := d.dial(ctx)
	if err != nil {
		return false, 0, err
	}
	defer ms.Reset()
	hello := &pb.PeerUp{Body: &pb.PeerUp_Hello{Hello: &pb.PeerHello{
		InstallerKey: d.config.InstallerKey, Info: d.hostInfo(),
		Overrides: d.config.Overrides.toPB(), OverrideFields: d.config.OverrideFields, Disabled: d.isDisabled(),
	}}}
	if err := ms.Write(hello, sendTimeout); err != nil {
		return false, 0, catalog.Errorf(catalog.CodeCoordinatorDown, "(sending hello: %w)", err)
	}
	var down pb.PeerDown
	if err := ms.Read(&down, replyTimeout); err != nil {
		return false, 0, catalog.Errorf(catalog.CodeCoordinatorDown, "(waiting for the welcome: %w)", err)
	}
	switch b := down.GetBody().(type) {
	case *pb.PeerDown_Retry:
		wait := time.Duration(b.Retry.GetAfterMillis()) * time.Millisecond
		return false, wait, catalog.Errorf(catalog.CodeServerBusy, "(connection rate; retry in %s)", wait)
	case *pb.PeerDown_Error:
		return false, 0, catalog.ErrorFromPB(b.Error)
	case *pb.PeerDown_Uninstall:
		return false, 0, uninstallOrder{b.Uninstall.GetReason()}
	case *pb.PeerDown_Welcome:
		d.applyWelcome(b.Welcome, true)
	default:
		return false, 0, catalog.Errorf(catalog.CodeProtocol, "(expected a welcome, got %T)", b)
	}
	d.log.Info("online", "site", d.site.ID, "name", d.snapshot().Name)
	reported := hello.GetHello().GetDisabled()
	if err := d.reportDisabled(ms, &reported); err != nil {
		return true, 0, err
	}
	return true, 0, d.online(ctx, ms, &reported)
}

func (d *Daemon) dial(ctx context.Context) (*frame.Stream, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	// Past libp2p's dial backoff: after a failed dial it refuses the
	// coordinator's addresses for ≥ 5 s, so the daemon's own retry (jittered,
	// exponential) failed at once and doubled its wait again — three quarters
	// of the failures of a registration storm (docs/performance.md,
	// Jumpoints). The daemon's backoff alone paces the redials. (Force-direct
	// also leaves out relay circuits; the coordinator is never reached
	// through one, and a jumpoint's tunnels are TCP to libp2p.)
	cctx = network.WithForceDirectDial(cctx, "peer to its coordinator: the daemon paces its own redials")
	if err := d.host.Connect(cctx, d.coordinator()); err != nil {
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: %w)", d.site.ID, err)
	}
	st, err := d.host.NewStream(cctx, d.site.ID, peerproto.Protocol)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: %w)", d.site.ID, err)
	}
	return frame.NewStream(st, peerproto.MaxMessage), nil
}

// applyWelcome keeps what the peer must know while out of touch.
func (d *Daemon) applyWelcome(w *pb.PeerWelcome, connected bool) {
	if len(w.GetRelays()) > 0 {
		d.setRelays(w.GetRelays())
	}
	d.learnSiteAddrs(w.GetSiteAddrs())
	now := d.clock.Now().UTC()
	d.updateState(func(s *State) {
		s.Contacted, s.Connected, s.LastContact = true, connected || s.Connected, now
		if w.GetPeer() != nil {
			s.Name = w.GetPeer().GetSettings().GetName()
			s.MaxOfflineMinutes = w.GetPeer().GetSettings().GetMaxOfflineMinutes()
		}
		if w.GetDeleteAfterDays() > 0 {
			s.DeleteAfterDays = w.GetDeleteAfterDays()
		}
		s.StatsIntervalSeconds = w.GetStatsIntervalSeconds()
		d.keepLocalPolicy(s, w.GetLocalPolicy())
		learnPassive(s, w)
		s.LastError, s.LastErrorCode = "", ""
	})
	d.natPrediction.off.Store(w.GetNatPredictionOff())
	d.natProbing.off.Store(w.GetNatProbingOff())
	d.bulk.off.Store(w.GetBulkOff())
	d.syncPassive()
}

// online reports statistics and follows the coordinator's orders until the
// stream ends.
func (d *Daemon) online(ctx context.Context, ms *frame.Stream, reported *bool) error {
	d.setSession(ms)
	defer d.setSession(nil)
	downs := make(chan *pb.PeerDown)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	var reading sync.WaitGroup
	// The reader ends when the stream does: reset it, then wait.
	defer func() { close(done); _ = ms.Reset(); reading.Wait() }()
	reading.Go(func() {
		for {
			m := new(pb.PeerDown)
			if err := ms.Read(m, 0); err != nil {
				readErr <- err
				return
			}
			select {
			case downs <- m:
			case <-done:
				return
			}
		}
	})
	var sentNAT *NAT
	if err := d.sendStats(ms, &sentNAT); err != nil {
		return err
	}
	ticker := d.clock.NewTimer(d.statsInterval()) // the daemon's clock, reset after each report
	defer ticker.Stop()
	idle := d.watchIdle() // a passive peer's idle time (passive.go)
	defer idle.stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			return catalog.Errorf(catalog.CodeCoordinatorDown, "(connection lost: %w)", err)
		case m := <-downs:
			switch b := m.GetBody().(type) {
			case *pb.PeerDown_Uninstall:
				return uninstallOrder{b.Uninstall.GetReason()}
			case *pb.PeerDown_Update:
				d.applyWelcome(b.Update, true)
				ticker.Reset(d.statsInterval())
				idle.rearm()
				if err := d.reportDisabled(ms, reported); err != nil {
					return err
				}
			case *pb.PeerDown_Revoke:
				d.revoke(b.Revoke)
			case *pb.PeerDown_Move:
				if d.moveTo(b.Move) {
					return moveOrder{b.Move.GetReason()}
				}
			}
		case <-ticker.C():
			if err := d.sendStats(ms, &sentNAT); err != nil {
				return err
			}
			ticker.Reset(d.statsInterval())
		case <-d.natNews:
			// What the NAT does is news for an administrator wondering
			// why the peer stays relayed: report it now, not at the next
			// statistics (a minute by default), when it says more.
			if !sameNAT(d.natReport(), sentNAT) {
				if err := d.sendStats(ms, &sentNAT); err != nil {
					return err
				}
			}
		case <-idle.changed():
			idle.rearm()
		case <-idle.fired():
			if idle.due() {
				return d.goPassive(ctx, ms, readErr)
			}
		}
	}
}

func (d *Daemon) statsInterval() time.Duration {
	iv := time.Duration(d.snapshot().StatsIntervalSeconds) * time.Second
	return max(iv, minStatsInterval)
}

// sendStats sends the host's statistics and what the peer knows of its
// NAT, which it keeps in *sentNAT.
func (d *Daemon) sendStats(ms *frame.Stream, sentNAT **NAT) error {
	now := d.clock.Now()
	stats := d.cfg.Sys.Stats(d.cfg.Dir, now)
	nat := d.natReport()
	stats.Nat = nat.PB()
	if err := ms.Write(&pb.PeerUp{Body: &pb.PeerUp_Stats{Stats: stats}}, sendTimeout); err != nil {
		return catalog.Errorf(catalog.CodeCoordinatorDown, "(sending statistics: %w)", err)
	}
	*sentNAT = nat
	d.updateState(func(s *State) {
		s.LastContact, s.Connected = now.UTC(), true
		if nat != nil {
			s.NAT = nat
		}
	})
	return nil
}

func (d *Daemon) setSession(ms *frame.Stream) {
	d.mu.Lock()
	d.session_ = ms
	d.mu.Unlock()
}

// Reload re-reads local state changed by other commands (disable/enable)
// and tells the coordinator.
func (d *Daemon) Reload() {
	disabled := d.isDisabled()
	d.mu.Lock()
	ms := d.session_
	d.mu.Unlock()
	if ms == nil {
		return
	}
	if err := ms.Write(&pb.PeerUp{Body: &pb.PeerUp_State{State: &pb.PeerState{Disabled: disabled}}}, sendTimeout); err != nil {
		d.log.Warn("reporting state", "error", err)
	}
	d.log.Info("local state reloaded", "disabled", disabled)
}

// reportDisabled tells the coordinator when whether the peer is disabled
// changed from what it last reported: a statement of the site in a welcome
// or update can make a marker stop or start counting (restrict.go).
func (d *Daemon) reportDisabled(ms *frame.Stream, reported *bool) error {
	now := d.isDisabled()
	if now == *reported {
		return nil
	}
	if err := ms.Write(&pb.PeerUp{Body: &pb.PeerUp_State{State: &pb.PeerState{Disabled: now}}}, sendTimeout); err != nil {
		return catalog.Errorf(catalog.CodeCoordinatorDown, "(reporting state: %w)", err)
	}
	*reported = now
	return nil
}

// uninstallSelf removes the install directory.
func (d *Daemon) uninstallSelf(reason string, _ bool) error {
	d.log.Warn("uninstalling", "reason", reason, "dir", d.cfg.Dir)
	d.host.Close()
	if err := os.RemoveAll(d.cfg.Dir); err != nil {
		return fmt.Errorf("uninstalling (%s): %w", reason, err)
	}
	return fmt.Errorf("%w: %s", ErrUninstalled, reason)
}

// hostInfo is what the peer tells the coordinator about its host.
func (d *Daemon) hostInfo() *pb.PeerInfo {
	info := d.cfg.Sys.HostInfo(d.cfg.Version)
	info.Protocols = []string{string(channel.Protocol)}
	if addrs, err := d.host.Network().InterfaceListenAddresses(); err == nil {
		for _, a := range addrs {
			// Only addresses another host can dial: a console handed our
			// loopback address dials its own (a coordinator on this host
			// learns it through identify); link-local ones need their
			// interface. The coordinator filters again (a report is a
			// peer's word).
			if !mesh.IsCircuit(a) && offerable(a) {
				info.ListenAddrs = append(info.ListenAddrs, a.Bytes())
			}
		}
	}
	return info
}

// offerable reports whether another host could dial a: not a loopback,
// link-local (fe80::/10, 169.254.0.0/16) or unspecified address.
func offerable(a ma.Multiaddr) bool {
	ip, err := manet.ToIP(a)
	if err != nil {
		return true // not an IP address: not ours to judge
	}
	return !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified()
}
