package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// The technician's views of peers: ls, show, set, rm.

type peerView struct {
	ID                      string    `json:"id"`
	Name                    string    `json:"name"`
	Status                  string    `json:"status"`
	Group                   string    `json:"jump_group"`
	Tag                     string    `json:"tag,omitempty"`
	Comments                string    `json:"comments,omitempty"`
	JumpPolicy              string    `json:"jump_policy,omitempty"`
	SessionPolicyPresent    string    `json:"session_policy_present,omitempty"`
	SessionPolicyNotPresent string    `json:"session_policy_not_present,omitempty"`
	MaxOfflineMinutes       uint32    `json:"max_offline_minutes,omitempty"`
	Connection              string    `json:"connection"`
	Hostname                string    `json:"hostname,omitempty"`
	OS                      string    `json:"os,omitempty"`
	Version                 string    `json:"version,omitempty"`
	PrivateIPs              []string  `json:"private_ips"`
	PublicIP                string    `json:"public_ip,omitempty"`
	Gateway                 string    `json:"gateway,omitempty"`
	GatewayMAC              string    `json:"gateway_mac,omitempty"`
	NICs                    []nicView `json:"nics,omitempty"`
	ConsoleUsers            []string  `json:"console_users"`
	Installer               string    `json:"installer,omitempty"`
	Installed               string    `json:"installed,omitempty"`
	LastSeen                string    `json:"last_seen,omitempty"`
	LastAccess              string    `json:"last_access,omitempty"`
	Stats                   *statsV   `json:"stats,omitempty"`
	// NAT is what the peer last reported of its NAT (its own claim).
	NAT *natView `json:"nat,omitempty"`
	// Jumpoints the peer talks through (names; a peer ID where the name
	// is not known).
	Jumpoints []string `json:"jumpoints,omitempty"`
}

// nicView is one network interface of the host (for Wake-on-LAN: its MAC).
type nicView struct {
	Name         string   `json:"name"`
	MAC          string   `json:"mac"`
	Addrs        []string `json:"addrs"`
	DefaultRoute bool     `json:"default_route,omitempty"`
}

type statsV struct {
	Load1     float64 `json:"load1"`
	CPUs      uint32  `json:"cpus"`
	DiskUsed  uint64  `json:"disk_used_bytes"`
	DiskTotal uint64  `json:"disk_total_bytes"`
	Uptime    uint64  `json:"uptime_seconds"`
	Taken     string  `json:"taken,omitempty"`
}

func newPeerView(v *pb.PeerView) peerView {
	p, s, i := v.GetPeer(), v.GetPeer().GetSettings(), v.GetPeer().GetInfo()
	out := peerView{ID: peer.ID(p.GetId()).String(), Name: s.GetName(), Status: v.GetStatus(), Group: s.GetGroup(), Tag: s.GetTag(),
		Comments: s.GetComments(), JumpPolicy: s.GetJumpPolicy(), SessionPolicyPresent: s.GetSessionPolicyPresent(),
		SessionPolicyNotPresent: s.GetSessionPolicyNotPresent(), MaxOfflineMinutes: s.GetMaxOfflineMinutes(),
		Connection: words.ConnectionTypeName(s.GetConnectionType()), Hostname: i.GetHostname(), OS: i.GetOs() + "/" + i.GetArch(),
		Version: i.GetVersion(), PrivateIPs: nonNil(i.GetPrivateIps()), PublicIP: p.GetPublicAddr(), Gateway: i.GetGatewayIp(),
		GatewayMAC: i.GetGatewayMac(), ConsoleUsers: nonNil(consoleUsers(p)), Installer: p.GetInstallerId(),
		Installed: jsonTime(p.GetInstalledUnix()), LastSeen: jsonTime(p.GetLastSeenUnix()), LastAccess: jsonTime(p.GetLastAccessUnix())}
	names := map[string]string{}
	for _, r := range v.GetJumpoints() {
		if r.GetName() != "" {
			names[string(r.GetId())] = r.GetName()
		}
	}
	for _, n := range i.GetNics() {
		out.NICs = append(out.NICs, nicView{Name: n.GetName(), MAC: n.GetMac(), Addrs: nonNil(n.GetAddrs()), DefaultRoute: n.GetDefaultRoute()})
	}
	for _, id := range p.GetJumpoints() {
		out.Jumpoints = append(out.Jumpoints, cmp.Or(names[string(id)], peer.ID(id).String()))
	}
	if st := p.GetStats(); st != nil {
		out.Stats = &statsV{Load1: st.GetLoad1(), CPUs: st.GetCpus(), DiskUsed: st.GetDiskUsedBytes(), DiskTotal: st.GetDiskTotalBytes(),
			Uptime: st.GetUptimeSeconds(), Taken: jsonTime(st.GetTakenUnix())}
		out.NAT = newNATView(st.GetNat())
	}
	return out
}

// nicFields are show's lines for the NICs: "NICs" then one line each,
// "eth0  02:00:00:00:00:01  192.168.1.10/24  (default route)".
func nicFields(nics []nicView) []string {
	if len(nics) == 0 {
		return []string{"NICs", "-"}
	}
	var kv []string
	for i, n := range nics {
		line := fmt.Sprintf("%s  %s  %s", n.Name, orDash(n.MAC), orDash(strings.Join(n.Addrs, ", ")))
		if n.DefaultRoute {
			line += "  (default route)"
		}
		key := ""
		if i == 0 {
			key = "NICs"
		}
		kv = append(kv, key, line)
	}
	return kv
}

func consoleUsers(p *pb.Peer) []string {
	if u := p.GetStats().GetConsoleUsers(); len(u) > 0 {
		return u
	}
	return p.GetInfo().GetConsoleUsers()
}

func lsCommand() *cli.Command {
	var f struct {
		deleted bool
		limit   int
	}
	return &cli.Command{
		Name:      "ls",
		Usage:     "list and search the peers you may reach",
		ArgsUsage: "[QUERY ...]",
		UsageText: "jumpmesh ls [QUERY ...] [--deleted] [--limit 1000] [--json]\n\n" +
			"Examples:\n" +
			"  jumpmesh ls\n" +
			"  jumpmesh ls web status:online\n" +
			"  jumpmesh ls tag:linux -status:offline jumpgroup:servers\n" +
			"  jumpmesh ls ip:10.1.2. 'last-access:>30d'\n" +
			"  jumpmesh ls nat:hard status:online",
		Description: "Terms are ANDed. A bare term matches any field; field:value matches one: name, hostname, tag,\n" +
			"comments, group (jumpgroup:X is short for group:jumpgroup:X), user or console-user, method\n" +
			"(active|passive|jumpoint), status (online|offline|passive|lost|uninstalled|disabled|deleted), private-ip,\n" +
			"public-ip, ip, id, last-access (<7d, >30d, never; quote it, > is a shell redirect), nat (what the\n" +
			"peer reported of its NAT: easy, hard, sequential, endpoint-independent, endpoint-dependent, random,\n" +
			"none, port-preserving, udp-blocked, hairpin, no-hairpin, unknown; --json lists the report). A leading -\n" +
			"negates a term; quote values with spaces. Sorted by name. At most --limit peers are listed (the\n" +
			"first in that order; 5000 at most, fewer if they would not fit one reply): when more match, a line on\n" +
			"stderr says how many. ls asks the coordinator on a TCP connection of its own (its members' lane, else\n" +
			"its TCP addresses) rather than the console's libp2p host, and falls back to the host when that cannot\n" +
			"be made; JUMPMESH_LS_DIRECT=0 always takes the host.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "deleted", Destination: &f.deleted, Usage: "include peers deleted but not yet uninstalled"},
			&cli.IntFlag{Name: "limit", Destination: &f.limit, Value: coordinator.DefaultPeerListLimit,
				Usage: fmt.Sprintf("list at most this many peers (1 to %d)", coordinator.MaxPeerListLimit)},
			jsonFlag,
		},
		// One call, then the process exits: no collection, no close.
		Before: func(*cli.Context) error { oneCallGC(); return nil },
		Action: func(cc *cli.Context) error {
			var terms []string
			for _, a := range cc.Args().Slice() {
				if a != "--" {
					terms = append(terms, a)
				}
			}
			if f.limit < 1 || f.limit > coordinator.MaxPeerListLimit {
				return usagef("--limit is 1 to %d", coordinator.MaxPeerListLimit)
			}
			// The table asks only for what it prints; --json for everything.
			view := pb.PeerListView_PEER_LIST_VIEW_TABLE
			if cc.Bool("json") {
				view = pb.PeerListView_PEER_LIST_VIEW_FULL
			}
			list := func(ctx context.Context, c peerLister) error {
				peers, total, err := c.PeerPageView(ctx, strings.Join(terms, " "), f.deleted, f.limit, view)
				if err != nil {
					return err
				}
				if total > len(peers) {
					fmt.Fprintf(cc.App.ErrWriter, "jumpmesh: showing the first %d of %d matching peers; narrow the query or raise --limit (at most %d)\n",
						len(peers), total, coordinator.MaxPeerListLimit)
				}
				// Both outputs are written from the decoded views (console's
				// peerlist.go: the bytes peerView printed, without its
				// reflection); only jumpoints are named through peerView.
				jumpoints := lsJumpoints(ctx, c, peers)
				if cc.Bool("json") {
					return console.WritePeerListJSON(cc.App.Writer, peers, jumpoints)
				}
				return console.WritePeerTable(cc.App.Writer, peers, jumpoints)
			}
			if done, err := lsDirect(cc, list); done {
				return err
			}
			return exitingClientAction(-1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
				return list(ctx, c)
			})(cc)
		},
	}
}

// peerLister is what ls asks of a console: a console.Client, or the
// host-less console.Direct.
type peerLister interface {
	PeerPageView(ctx context.Context, query string, includeDeleted bool, limit int, view pb.PeerListView) ([]*pb.PeerView, int, error)
	jumpointLister
}

type jumpointLister interface {
	Jumpoints(ctx context.Context) ([]*pb.JumpointView, error)
}

// LsDirectEnv, set to 0, makes ls open the console's host as other
// commands do instead of trying the coordinator directly first.
const LsDirectEnv = "JUMPMESH_LS_DIRECT"

// lsDirect runs list on a connection to the coordinator without a host
// (console.Direct: a host costs a one-call command more than its list
// does, issue 16). done is false when it could not connect, or lost the
// connection before an answer (a list only reads, so asking again is
// safe): ls then opens the console as every command does, which also
// reaches a coordinator through its lane or relays and says what is
// wrong with a home. The connection's close is not waited for: the
// process exits (exitingClientAction).
func lsDirect(cc *cli.Context, list func(context.Context, peerLister) error) (done bool, err error) {
	if os.Getenv(LsDirectEnv) == "0" {
		return false, nil
	}
	home, err := homeDir(cc)
	if err != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(cc.Context, requestTimeout)
	defer cancel()
	d, err := console.OpenDirect(ctx, home)
	if err != nil {
		return false, nil
	}
	defer func() { go d.Close() }()
	err = list(ctx, d)
	if catalog.HasCode(err, catalog.CodeCoordinatorDown) {
		return false, nil
	}
	return true, err
}

// lsJumpoints is ls's jumpoints of each of peers (nil when none has
// any): their names from one jumpoint_list, as nameJumpoints gives them.
func lsJumpoints(ctx context.Context, c jumpointLister, peers []*pb.PeerView) func(i int) []string {
	behind := map[int]*peerView{}
	var views []peerView
	for i, p := range peers {
		if len(p.GetPeer().GetJumpoints()) > 0 {
			views = append(views, newPeerView(p))
			behind[i] = nil
		}
	}
	if len(views) == 0 {
		return nil
	}
	nameJumpoints(ctx, c, views)
	k := 0
	for i := range peers {
		if _, ok := behind[i]; ok {
			behind[i] = &views[k]
			k++
		}
	}
	return func(i int) []string {
		if v := behind[i]; v != nil {
			return v.Jumpoints
		}
		return nil
	}
}

// connectionText is the connection type, and the jumpoints of a peer
// behind them.
func connectionText(v peerView) string {
	if len(v.Jumpoints) > 0 {
		return v.Connection + " via jumpoint " + strings.Join(v.Jumpoints, ", ")
	}
	return v.Connection
}

// nameJumpoints replaces the jumpoints' peer IDs in views (a list
// carries only the IDs) with their names, from one jumpoint_list; IDs
// it does not know are shortened.
func nameJumpoints(ctx context.Context, c jumpointLister, views []peerView) {
	names := map[string]string{}
	if list, err := c.Jumpoints(ctx); err == nil {
		for _, j := range list {
			if len(j.GetId()) > 0 {
				names[peer.ID(j.GetId()).String()] = j.GetName()
			}
		}
	}
	for i := range views {
		for k, id := range views[i].Jumpoints {
			if n, ok := names[id]; ok {
				views[i].Jumpoints[k] = n
			} else if _, err := peer.Decode(id); err == nil {
				views[i].Jumpoints[k] = shortID(id)
			}
		}
	}
}

// shortID keeps a peer ID recognisable in a table; show and --json print it whole.
func shortID(id string) string { return console.ShortID(id) }

func lastSeen(v *pb.PeerView) string {
	if v.GetStatus() == "online" || v.GetStatus() == "disabled" {
		return "now"
	}
	return unixTime(v.GetPeer().GetLastSeenUnix())
}

func showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show one peer: every field and its latest statistics",
		ArgsUsage: "PEER",
		UsageText: "jumpmesh show PEER [--json]\n\nExample:\n  jumpmesh show web-01",
		Description: "PEER is a peer ID, a unique name, or a search with a single result; when several peers\n" +
			"match, the error lists them.\n\n" +
			"The NAT line is what the peer learnt of its NAT from its coordinator and relays (the mapping of its\n" +
			"TCP and UDP flows, whether the NAT kept its port): it tells why a peer stays relayed (an\n" +
			"endpoint-dependent mapping with random ports cannot be punched). It is the peer's own claim, which a\n" +
			"compromised peer may falsify; jumpmesh shows it and authorises nothing on it.",
		Flags: []cli.Flag{jsonFlag},
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			p, err := c.Peer(ctx, cc.Args().First())
			if err != nil {
				return err
			}
			return printPeer(cc, p)
		}),
	}
}

func printPeer(cc *cli.Context, p *pb.PeerView) error {
	v := newPeerView(p)
	return output(cc, v, func(w io.Writer) {
		kv := []string{"name", v.Name, "peer", v.ID, "status", v.Status, "jump group", v.Group, "tag", orDash(v.Tag),
			"comments", orDash(v.Comments), "jump policy", orDash(v.JumpPolicy),
			"session policy (present)", orDash(v.SessionPolicyPresent), "session policy (not present)", orDash(v.SessionPolicyNotPresent),
			"max offline", offlineText(v.MaxOfflineMinutes, p.GetPeer().GetSettings().GetEphemeral()), "connection", connectionText(v),
			"hostname", orDash(v.Hostname), "os", v.OS, "version", orDash(v.Version),
			"private IPs", orDash(strings.Join(v.PrivateIPs, ", ")), "public IP", orDash(v.PublicIP),
			"gateway", orDash(strings.TrimSpace(v.Gateway + " " + v.GatewayMAC))}
		kv = append(kv, nicFields(v.NICs)...)
		kv = append(kv, "console users", orDash(strings.Join(v.ConsoleUsers, ", ")),
			"installer", orDash(v.Installer), "installed", unixTime(p.GetPeer().GetInstalledUnix()),
			"last seen", lastSeen(p), "last access", unixTime(p.GetPeer().GetLastAccessUnix()))
		if st := v.Stats; st != nil {
			kv = append(kv, "load", fmt.Sprintf("%.2f on %d CPUs", st.Load1, st.CPUs),
				"disk", fmt.Sprintf("%s of %s used", bytesText(st.DiskUsed), bytesText(st.DiskTotal)),
				"uptime", (time.Duration(st.Uptime) * time.Second).String(), "statistics taken", humanTime(st.Taken))
		}
		kv = append(kv, "NAT", natText(v.NAT))
		fields(w, kv...)
	})
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func setCommand() *cli.Command {
	var f struct{ name, tag, comments, group, jumpPolicy, spPresent, spNotPresent string }
	flags := []struct {
		name  string
		dest  *string
		field installerkey.Field
		usage string
	}{
		{"name", &f.name, installerkey.FieldName, "new name (at most 128 characters)"},
		{"tag", &f.tag, installerkey.FieldTag, "new tag (empty clears it)"},
		{"comments", &f.comments, installerkey.FieldComments, "new comments (empty clears them)"},
		{"group", &f.group, installerkey.FieldGroup, "move to user:NAME or jumpgroup:CODE (you need access to both groups)"},
		{"jump-policy", &f.jumpPolicy, installerkey.FieldJumpPolicy, "jump policy (empty: none)"},
		{"session-policy-present", &f.spPresent, installerkey.FieldSessionPolicyPresent, "session policy when a user is logged in"},
		{"session-policy-not-present", &f.spNotPresent, installerkey.FieldSessionPolicyNotPresent, "session policy when nobody is logged in"},
	}
	cliFlags := []cli.Flag{jsonFlag}
	for _, fl := range flags {
		cliFlags = append(cliFlags, &cli.StringFlag{Name: fl.name, Destination: fl.dest, Usage: fl.usage})
	}
	return &cli.Command{
		Name:      "set",
		Usage:     "change a peer's name, tag, comments, jump group or policies",
		ArgsUsage: "PEER",
		UsageText: "jumpmesh set PEER [--name N] [--tag T] [--comments C] [--group G] [--jump-policy P]\n" +
			"    [--session-policy-present P] [--session-policy-not-present P] [--json]\n\n" +
			"Example:\n  jumpmesh set web-01 --tag prod --comments \"rack 4\"",
		Flags: cliFlags,
		Action: clientAction(1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
			want := &pb.InstallerDefaults{Name: f.name, Tag: f.tag, Comments: f.comments, Group: f.group, JumpPolicy: f.jumpPolicy,
				SessionPolicyPresent: f.spPresent, SessionPolicyNotPresent: f.spNotPresent}
			var fields installerkey.Field
			for _, fl := range flags {
				if cc.IsSet(fl.name) {
					fields |= fl.field
				}
			}
			if fields == 0 {
				return usagef("set: give at least one of --name, --tag, --comments, --group, --jump-policy, --session-policy-*")
			}
			p, err := c.SetPeer(ctx, cc.Args().First(), want, uint32(fields))
			if err != nil {
				return err
			}
			return printPeer(cc, p)
		}),
	}
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "delete peers: each uninstalls itself at once if online, else at its next contact",
		ArgsUsage: "PEER [PEER ...]",
		UsageText: "jumpmesh rm PEER [PEER ...] [--json]\n\nExample:\n  jumpmesh rm web-01 web-02",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(cc *cli.Context) error {
			if cc.NArg() == 0 {
				return usagef("rm: name at least one peer")
			}
			return clientAction(-1, func(ctx context.Context, cc *cli.Context, c *console.Client) error {
				if err := c.RemovePeers(ctx, cc.Args().Slice()...); err != nil {
					return err
				}
				return output(cc, map[string][]string{"deleted": cc.Args().Slice()}, func(w io.Writer) {
					fmt.Fprintf(w, "Deleted %s.\n", strings.Join(cc.Args().Slice(), ", "))
				})
			})(cc)
		},
	}
}
