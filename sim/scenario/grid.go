package scenario

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/results"
)

// DefaultWaitDirect is how long a connect step waits, by default, for a
// relayed connection to go direct.
const DefaultWaitDirect = 5 * time.Second

// GridWaitDirect is a grid's default: a hard peer probes with each
// console in turn (one exchange at a time, each up to 3.5 s when it
// spends its probes), so the last of three consoles may wait longer.
const GridWaitDirect = 8 * time.Second

// GridPresets are the presets a grid crosses by default: every preset a
// host can connect out of (isolated has no route out).
var GridPresets = []netlab.Preset{netlab.Public, netlab.Easy, netlab.CGNAT, netlab.Hard, netlab.Sequential, netlab.UDPBlocked}

// ExpectDirect says whether hole punching must give a console behind c and
// a peer behind p a direct connection: both sides map
// endpoint-independently (public, easy, cgnat; udp-blocked over TCP), or
// the console does and the peer is behind a sequential NAT, whose next
// port the peer's puncher predicts (mesh/punch, mesh/natmap), or one side
// is hard and the other endpoint-independent over UDP (public, easy,
// cgnat): port-mapping probing opens that pair (mesh/probe). Two hard
// sides stay relayed (nothing meets), as does a hard side against a
// udp-blocked one (probing is UDP) or a sequential one (its probes leave
// from new ports), and a sequential console, whose side predicts nothing
// (libp2p's DCUtR service offers what identify observed).
func ExpectDirect(c, p netlab.Preset) bool {
	eim := func(x netlab.Preset) bool {
		return x == netlab.Public || x == netlab.Easy || x == netlab.CGNAT || x == netlab.UDPBlocked
	}
	eimUDP := func(x netlab.Preset) bool { return eim(x) && x != netlab.UDPBlocked }
	return eim(c) && (eim(p) || p == netlab.Sequential) ||
		c == netlab.Hard && eimUDP(p) || eimUDP(c) && p == netlab.Hard
}

// GridOptions shape a NAT grid.
type GridOptions struct {
	Presets    []netlab.Preset // default GridPresets
	Runs       int             // times every pair connects; default 1
	Latency    time.Duration   // one-way, on each NAT's uplink (a public host's own cable); default 10ms
	WaitDirect time.Duration   // default GridWaitDirect
}

// Grid is the scenario `jumpmesh sim grid` runs: a public coordinator and
// relay; for each preset a network with one peer (peer-PRESET in
// p-PRESET) and another with one console (con-PRESET in c-PRESET); every
// console connects to every peer.
func Grid(o GridOptions) (*Scenario, error) {
	if len(o.Presets) == 0 {
		o.Presets = GridPresets
	}
	if o.Runs == 0 {
		o.Runs = 1
	}
	if o.Latency == 0 {
		o.Latency = 10 * time.Millisecond
	}
	if o.WaitDirect == 0 {
		o.WaitDirect = GridWaitDirect
	}
	sc := &Scenario{
		Name:        "nat-grid",
		Description: "every console NAT preset against every peer NAT preset, through one public coordinator and relay",
		Networks:    []Network{{Name: "dc", NAT: netlab.Public}},
		Hosts: []Host{
			{Name: "coordinator", Network: "dc", Role: RoleCoordinator},
			{Name: "relay-1", Network: "dc", Role: RoleRelay},
		},
	}
	lat := Shape{Latency: Duration(o.Latency)}
	seen := map[netlab.Preset]bool{}
	var consoles []Host
	for _, p := range o.Presets {
		if p == netlab.Isolated || seen[p] {
			return nil, fmt.Errorf("grid: preset %q: use each of %v once", p, GridPresets)
		}
		seen[p] = true
		for _, side := range []struct{ net, host, role string }{{"p-", "peer-", RolePeer}, {"c-", "con-", RoleConsole}} {
			n := Network{Name: side.net + string(p), NAT: p}
			h := Host{Name: side.host + string(p), Network: n.Name, Role: side.role}
			if p == netlab.Public {
				h.Shape = lat // a public network has no uplink of its own
			} else {
				n.Shape = lat
			}
			sc.Networks = append(sc.Networks, n)
			if side.role == RoleConsole {
				consoles = append(consoles, h)
			} else {
				sc.Hosts = append(sc.Hosts, h)
			}
		}
	}
	sc.Hosts = append(sc.Hosts, consoles...)
	steps := []Step{{Action: "init"}, {Action: "relay", Args: []string{"relay-1"}}}
	for _, p := range o.Presets {
		steps = append(steps, Step{Action: "install", Args: []string{"peer-" + string(p)}})
	}
	for _, p := range o.Presets {
		steps = append(steps, Step{Action: "expect-status", Args: []string{"peer-" + string(p), "online"}, Within: time.Minute})
	}
	for _, p := range o.Presets {
		steps = append(steps, Step{Action: "expect-relay", Args: []string{"peer-" + string(p)}, Within: time.Minute})
	}
	sc.Steps = append(steps, Step{Action: "grid", Runs: o.Runs, WaitDirect: o.WaitDirect})
	return sc, sc.validate()
}

// preset is the NAT preset of host's network.
func (r *runner) preset(host string) netlab.Preset {
	return r.lab.Host(host).Network().Preset()
}

// uplink is the one-way latency from host to the internet: its cable plus
// its network's uplink.
func (r *runner) uplink(host string) time.Duration {
	var d time.Duration
	for _, h := range r.sc.Hosts {
		if h.Name != host {
			continue
		}
		d += time.Duration(h.Latency)
		for _, n := range r.sc.Networks {
			if n.Name == h.nets()[0] && n.NAT != netlab.Public {
				d += time.Duration(n.Latency)
			}
		}
	}
	return d
}

// relayRTT is the round trip from console to peer through the first relay
// that the lab's link latencies imply.
func (r *runner) relayRTT(console, peer string) time.Duration {
	relay := r.hostOf(RoleRelay)
	if relay == "" {
		return 0
	}
	return 2 * (r.uplink(console) + 2*r.uplink(relay) + r.uplink(peer))
}

// connect measures how console reaches peer with `jumpmesh ping`: the
// first connection, whether it goes direct within wait, and the round
// trip on the final path. The result is added to the run's paths.
func (r *runner) connect(ctx context.Context, console, peer string, run int, wait time.Duration) results.Path {
	pr := results.Path{Run: run, Console: console, Peer: peer, ConsoleNAT: string(r.preset(console)),
		PeerNAT: string(r.preset(peer)), RelayRTTMS: ms(r.relayRTT(console, peer))}
	var pg struct {
		Initial, Final, Path, Transport string
		ConnectMS                       float64 `json:"connect_ms"`
		TimeToDirectMS                  float64 `json:"time_to_direct_ms"`
		RTTMS                           float64 `json:"rtt_ms"`
		// The probes of a port-mapping probe exchange (absent from
		// consoles that do not report it).
		ProbesSent int `json:"probes_sent"`
	}
	t0 := time.Now()
	res, err := r.jm(ctx, console, &pg, "ping", peer, "-c", "3", "-i", "100ms", "--wait-direct", wait.String(), "--json")
	if err != nil {
		pr.Error = res.failure()
		if pr.Error == "" {
			pr.Error = err.Error()
		}
	} else {
		pr.OK, pr.Initial, pr.Final, pr.Transport = true, pg.Initial, pg.Final, pg.Transport
		pr.ConnectMS, pr.TimeToDirectMS, pr.RTTMS = pg.ConnectMS, pg.TimeToDirectMS, pg.RTTMS
		pr.FinalAddr, pr.ProbesSent = pg.Path, pg.ProbesSent
		if i := strings.IndexByte(pg.Path, ' '); i >= 0 {
			pr.FinalAddr = pg.Path[i+1:]
		}
		if pr.Initial == "relayed" && pr.Final == "direct" {
			pr.PunchAttempt = r.punchAttempt(peer, console, t0)
		}
		// "via jumpoint NAME (ADDR)": the jumpoint, and the peer's address.
		if f := strings.Fields(pg.Path); pg.Final == "jumpoint" && len(f) == 4 && f[1] == "jumpoint" {
			pr.Jumpoint, pr.FinalAddr = f[2], strings.Trim(f[3], "()")
		}
	}
	r.resMu.Lock()
	r.res.Paths = append(r.res.Paths, pr)
	r.resMu.Unlock()
	return pr
}

// describe is one line about a pair's outcome.
func describe(p results.Path) string {
	switch {
	case !p.OK:
		return fmt.Sprintf("%s → %s: FAILED: %s", p.Console, p.Peer, p.Error)
	case p.Initial == "relayed" && p.Final == "direct":
		return fmt.Sprintf("%s → %s: relayed, direct (%s) after %.0f ms", p.Console, p.Peer, p.Transport, p.TimeToDirectMS)
	case p.Final == "direct":
		return fmt.Sprintf("%s → %s: direct (%s) at once, connect %.0f ms", p.Console, p.Peer, p.Transport, p.ConnectMS)
	case p.Final == "jumpoint":
		return fmt.Sprintf("%s → %s: via jumpoint %s to %s, connect %.0f ms, rtt %.1f ms", p.Console, p.Peer, p.Jumpoint, p.FinalAddr, p.ConnectMS, p.RTTMS)
	default:
		return fmt.Sprintf("%s → %s: %s, connect %.0f ms, rtt %.1f ms", p.Console, p.Peer, p.Final, p.ConnectMS, p.RTTMS)
	}
}

func waitDirect(st Step) time.Duration {
	if st.WaitDirect > 0 {
		return st.WaitDirect
	}
	return DefaultWaitDirect
}

// connectStep is `connect CONSOLE PEER`, optionally with expect-path.
func (r *runner) connectStep(ctx context.Context, console, peer string, st Step) (string, error) {
	var lines []string
	for run := 1; run <= max(1, st.Runs); run++ {
		pr := r.connect(ctx, console, peer, run, waitDirect(st))
		lines = append(lines, describe(pr))
		out := strings.Join(lines, "\n")
		switch {
		case !pr.OK:
			return out, fmt.Errorf("run %d: %s", run, pr.Error)
		case st.ExpectPath != "" && pr.Final != st.ExpectPath:
			return out, fmt.Errorf("run %d: path: want %s, ended %s", run, st.ExpectPath, pr.Final)
		}
	}
	return strings.Join(lines, "\n"), nil
}

// grid connects every console to every peer, Runs times. The consoles run
// at once, each through the peers in turn (starting at a different peer,
// so no peer takes every console at the same moment). It fails when a pair
// does not connect at all, or when a pair that ExpectDirect ended relayed.
func (r *runner) grid(ctx context.Context, st Step) (string, error) {
	var consoles, peers []string
	presets := []string{}
	for _, h := range r.sc.Hosts {
		switch h.Role {
		case RoleConsole:
			consoles = append(consoles, h.Name)
		case RolePeer:
			peers = append(peers, h.Name)
			if p := string(r.preset(h.Name)); !slices.Contains(presets, p) {
				presets = append(presets, p)
			}
		}
	}
	runs, wait := max(1, st.Runs), waitDirect(st)
	r.resMu.Lock()
	r.res.Grid = &results.Grid{Presets: presets, Runs: runs, LatencyMS: ms(r.commonUplink()), WaitMS: ms(wait)}
	r.resMu.Unlock()
	var (
		lines []string
		errs  []error
		mu    sync.Mutex
	)
	for run := 1; run <= runs; run++ {
		var wg sync.WaitGroup
		for ci, c := range consoles {
			wg.Go(func() {
				for k := range peers {
					p := peers[(ci+k)%len(peers)]
					if ctx.Err() != nil {
						return
					}
					pr := r.connect(ctx, c, p, run, wait)
					var err error
					switch {
					case !pr.OK:
						err = fmt.Errorf("run %d: %s → %s did not connect: %s", run, c, p, pr.Error)
					case pr.Final != "direct" && ExpectDirect(r.preset(c), r.preset(p)):
						err = fmt.Errorf("run %d: %s → %s stayed relayed (%s × %s should go direct)", run, c, p, r.preset(c), r.preset(p))
					}
					mu.Lock()
					line := fmt.Sprintf("run %d: %s", run, describe(pr))
					lines = append(lines, line)
					if err != nil {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	r.resMu.Lock()
	r.res.Classes = results.Classes(r.res.Paths)
	r.resMu.Unlock()
	slices.Sort(lines)
	return strings.Join(lines, "\n"), errors.Join(errs...)
}

// commonUplink is the one-way latency every NATed network's uplink has,
// or zero when they differ.
func (r *runner) commonUplink() time.Duration {
	d, seen := time.Duration(0), false
	for _, n := range r.sc.Networks {
		if n.NAT == netlab.Public {
			continue
		}
		if seen && time.Duration(n.Latency) != d {
			return 0
		}
		d, seen = time.Duration(n.Latency), true
	}
	return d
}
