package scale

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// QueryResult is one search, run SearchRuns times both ways.
type QueryResult struct {
	Query   string `json:"query"`
	Matches int    `json:"matches"`
	// Server is the control service answering in this process (the
	// search, its sort and the views), Console the same through the
	// administrator's console over libp2p and printed as `jumpmesh ls`
	// prints it (the table's view of each record, its table), ConsoleJSON
	// as `jumpmesh ls --json` (every field, printed as JSON; Server,
	// Encode and Decode are of this view). What they print goes to
	// io.Discard: a terminal's or a pipe's reader is not timed.
	Server      Latency `json:"server"`
	Console     Latency `json:"console"`
	ConsoleJSON Latency `json:"console_json"`
	// Print and PrintJSON are the printing alone (part of Console and
	// ConsoleJSON).
	Print     Latency `json:"print"`
	PrintJSON Latency `json:"print_json"`
	// Encode is marshalling the service's reply as the control stream
	// does, Decode unmarshalling it as the console does (both in this
	// process, on the replies of Server's runs), ReplyBytes its size: with
	// Server they are the console's time but for the wire (TLS, yamux,
	// the scheduler), which is Console less the three.
	Encode     Latency `json:"encode"`
	Decode     Latency `json:"decode"`
	ReplyBytes int     `json:"reply_bytes"`
	// ConsoleErrors counts the console's runs that failed, ConsoleError
	// is the last failure (a reply larger than a control message, for
	// instance); Console has the runs that did not.
	ConsoleErrors int    `json:"console_errors,omitempty"`
	ConsoleError  string `json:"console_error,omitempty"`
	// ConsoleAllocs and ConsoleJSONAllocs are what this process (the
	// coordinator and the console both) allocated per run of Console and
	// ConsoleJSON: what the garbage collector is paid for, and on a heap
	// of 100,000 records its marking is what a late run waited for.
	ConsoleAllocs     Allocs `json:"console_allocs"`
	ConsoleJSONAllocs Allocs `json:"console_json_allocs"`
	// Process and ProcessJSON are the query as a technician runs it
	// (Config.ConsoleBinary): `jumpmesh ls --deleted -- QUERY` and the
	// same with --json, each run a process of its own with a logged-in
	// console home, timed from its start to its exit — the program's
	// start, the console's libp2p host, its connection to the coordinator
	// (dial, security handshake, muxer), the call, the printing (to
	// /dev/null) and the exit. Nothing of it shares this process's heap.
	// ProcessErrors counts the runs that failed, ProcessError the last.
	Process     Latency `json:"process"`
	ProcessJSON Latency `json:"process_json"`
	// ProcessCPU and ProcessJSONCPU are the CPU the command's process
	// used (user and system, the kernel's account at its exit), in
	// milliseconds: what a loaded machine moves much less than the wall.
	ProcessCPU     Latency `json:"process_cpu"`
	ProcessJSONCPU Latency `json:"process_json_cpu"`
	ProcessErrors  int     `json:"process_errors,omitempty"`
	ProcessError   string  `json:"process_error,omitempty"`
}

// Allocs is what a run allocated: objects and kilobytes.
type Allocs struct {
	Objects float64 `json:"objects"`
	KB      float64 `json:"kb"`
}

// SearchResult is searching a site with many stored peers.
type SearchResult struct {
	Stored int `json:"stored"`
	// Known is every peer the coordinator loaded (stored and enrolled).
	Known int `json:"known"`
	// WriteSeconds is writing the records to the store; LoadSeconds
	// starting the coordinator over them (it loads every record).
	WriteSeconds float64 `json:"write_seconds"`
	LoadSeconds  float64 `json:"load_seconds"`
	// FirstSearchMs is the first search after the load: the first query,
	// once, before its runs (the coordinator builds its search index while
	// loading, so this is one more search; LoadSeconds includes the index).
	FirstSearchMs float64       `json:"first_search_ms"`
	Runs          int           `json:"runs"`
	Queries       []QueryResult `json:"queries"`
	// GoalRatio is the worst query's console p99 ÷ SearchGoal (issue 16:
	// ≤ 1 is met), of `ls` and `ls --json` both; GoalRatioLs and
	// GoalRatioJSON each alone.
	GoalRatio     float64 `json:"goal_ratio"`
	GoalRatioLs   float64 `json:"goal_ratio_ls"`
	GoalRatioJSON float64 `json:"goal_ratio_json"`
	// ProcessGoalRatio is the same of the commands run as processes
	// (QueryResult.Process), when they ran.
	ProcessGoalRatio     float64 `json:"process_goal_ratio,omitempty"`
	ProcessGoalRatioLs   float64 `json:"process_goal_ratio_ls,omitempty"`
	ProcessGoalRatioJSON float64 `json:"process_goal_ratio_json,omitempty"`
}

// SearchGoal is issue 16's bound on `ls` at 100,000 stored peers: p99
// end to end, through a console.
const SearchGoal = 20 * time.Millisecond

// Search stops the coordinator, writes StoredPeers synthetic peer records
// to its store (in batches, as Badger bounds a transaction), starts it
// again and runs a few queries as the administrator. Peers still online
// come back before the queries run.
func (e *Engine) Search(ctx context.Context) (*SearchResult, error) {
	m := e.cfg.storedPeers()
	if err := e.Site.Stop(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := e.writeRecords(m); err != nil {
		return nil, err
	}
	r := &SearchResult{Stored: m, Runs: e.cfg.searchRuns(), WriteSeconds: time.Since(start).Seconds()}
	start = time.Now()
	if err := e.Site.Start(); err != nil {
		return nil, err
	}
	r.LoadSeconds = time.Since(start).Seconds()
	if e.fleet != nil && !e.fleetDone {
		wctx, cancel := e.wait(ctx)
		defer cancel()
		if err := e.Site.WaitOnline(wctx, e.cfg.peers()); err != nil {
			return nil, err
		}
	}
	r.Known, _ = e.Site.Coord.Service().PeerCounts()
	queries := SearchQueries(m)
	start = time.Now()
	if _, err := e.Site.Peers(ctx, queries[0]); err != nil {
		return nil, err
	}
	r.FirstSearchMs = ms(time.Since(start))
	home := ""
	if e.cfg.ConsoleBinary != "" {
		var err error
		if home, err = e.commandConsole(ctx); err != nil {
			return nil, err
		}
	}
	for _, q := range queries {
		qr, err := e.query(ctx, q, r.Runs)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", q, err)
		}
		if home != "" {
			e.commands(ctx, &qr, home, r.Runs)
			r.ProcessGoalRatioLs = max(r.ProcessGoalRatioLs, qr.Process.P99/ms(SearchGoal))
			r.ProcessGoalRatioJSON = max(r.ProcessGoalRatioJSON, qr.ProcessJSON.P99/ms(SearchGoal))
			r.ProcessGoalRatio = max(r.ProcessGoalRatioLs, r.ProcessGoalRatioJSON)
		}
		r.Queries = append(r.Queries, qr)
		r.GoalRatioLs = max(r.GoalRatioLs, qr.Console.P99/ms(SearchGoal))
		r.GoalRatioJSON = max(r.GoalRatioJSON, qr.ConsoleJSON.P99/ms(SearchGoal))
		r.GoalRatio = max(r.GoalRatioLs, r.GoalRatioJSON)
	}
	return r, nil
}

func (e *Engine) query(ctx context.Context, q string, runs int) (QueryResult, error) {
	qr := QueryResult{Query: q}
	server := make([]time.Duration, 0, runs)
	encode := make([]time.Duration, 0, runs)
	decode := make([]time.Duration, 0, runs)
	req := &pb.Request{Body: &pb.Request_PeerList{PeerList: &pb.PeerListRequest{Query: q, IncludeDeleted: true}}}
	for range runs {
		start := time.Now()
		resp, err := e.Site.Do(ctx, req)
		if err != nil {
			return qr, err
		}
		server = append(server, time.Since(start))
		start = time.Now()
		raw, err := control.EncodeDelimited(resp)
		if err != nil {
			return qr, err
		}
		encode = append(encode, time.Since(start))
		start = time.Now()
		got, err := control.DecodeResponse(raw)
		if err != nil {
			return qr, err
		}
		decode = append(decode, time.Since(start))
		qr.Matches, qr.ReplyBytes = len(got.GetPeers().GetPeers()), len(raw)
	}
	qr.Server, qr.Encode, qr.Decode = latencyOf(server), latencyOf(encode), latencyOf(decode)
	if path := os.Getenv(SearchProfileEnv); path != "" && q == SearchQueries(0)[2] {
		stop, err := startCPUProfile(path)
		if err != nil {
			return qr, err
		}
		defer stop()
	}
	for _, view := range []pb.PeerListView{pb.PeerListView_PEER_LIST_VIEW_TABLE, pb.PeerListView_PEER_LIST_VIEW_FULL} {
		wire := make([]time.Duration, 0, runs)
		printing := make([]time.Duration, 0, runs)
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			start := time.Now()
			views, _, err := e.Site.Admin.PeerPageView(ctx, q, true, 0, view)
			if err != nil {
				qr.ConsoleErrors++
				qr.ConsoleError = fmt.Sprintf("%s: %v", catalog.CodeOf(err), err)
				continue
			}
			printed := time.Now()
			if view == pb.PeerListView_PEER_LIST_VIEW_TABLE {
				err = console.WritePeerTable(io.Discard, views, nil)
			} else {
				err = console.WritePeerListJSON(io.Discard, views, nil)
			}
			if err != nil {
				return qr, err
			}
			wire = append(wire, time.Since(start))
			printing = append(printing, time.Since(printed))
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		a := Allocs{Objects: float64(after.Mallocs-before.Mallocs) / float64(runs), KB: float64(after.TotalAlloc-before.TotalAlloc) / 1e3 / float64(runs)}
		if view == pb.PeerListView_PEER_LIST_VIEW_TABLE {
			qr.Console, qr.Print, qr.ConsoleAllocs = latencyOf(wire), latencyOf(printing), a
		} else {
			qr.ConsoleJSON, qr.PrintJSON, qr.ConsoleJSONAllocs = latencyOf(wire), latencyOf(printing), a
		}
	}
	if path := os.Getenv(SearchAllocProfileEnv); path != "" && q == SearchQueries(0)[2] {
		if err := writeAllocProfile(path); err != nil {
			return qr, err
		}
	}
	return qr, nil
}

// commandConsole logs a second administrator in from a console home of
// its own (the site's administrator is this process's console: a command
// with its key would be a second host with the same peer ID) and returns
// the home, for the commands `ls` runs.
func (e *Engine) commandConsole(ctx context.Context) (string, error) {
	inv, err := e.Site.Admin.InviteUser(ctx, "ls-command", pb.Role_ROLE_ADMIN, time.Hour)
	if err != nil {
		return "", fmt.Errorf("inviting the command's console: %w", err)
	}
	home := filepath.Join(e.Site.cfg.Dir, "ls-command")
	c, _, err := console.Login(ctx, home, e.Site.Coord.LoginAddrs()[0].String(), inv.GetCode())
	if err != nil {
		return "", fmt.Errorf("the command's console login: %w", err)
	}
	return home, c.Close()
}

// commands runs q as `jumpmesh ls` and `jumpmesh ls --json`, runs times
// each, alternating, each a process of its own: qr.Process, ProcessJSON.
// One untimed `ls --json` first checks that the command lists what the
// service did (qr.Matches peers); if not, every run counts as failed.
func (e *Engine) commands(ctx context.Context, qr *QueryResult, home string, runs int) {
	command := func(js bool) *exec.Cmd {
		args := []string{"--home", home, "ls", "--deleted"}
		if js {
			args = append(args, "--json")
		}
		args = append(append(args, "--"), strings.Fields(qr.Query)...)
		return exec.CommandContext(ctx, e.cfg.ConsoleBinary, args...)
	}
	var out, stderr bytes.Buffer
	check := command(true)
	check.Stdout, check.Stderr = &out, &stderr
	if err := check.Run(); err != nil {
		qr.ProcessErrors, qr.ProcessError = 2*runs, fmt.Sprintf("%v: %s", err, bytes.TrimSpace(stderr.Bytes()))
		return
	}
	if n := bytes.Count(out.Bytes(), []byte("\n    \"id\": ")); n != qr.Matches {
		qr.ProcessErrors, qr.ProcessError = 2*runs, fmt.Sprintf("ls --json listed %d peers, the service %d", n, qr.Matches)
		return
	}
	table := make([]time.Duration, 0, runs)
	asJSON := make([]time.Duration, 0, runs)
	tableCPU := make([]time.Duration, 0, runs)
	asJSONCPU := make([]time.Duration, 0, runs)
	for range runs {
		for _, js := range []bool{false, true} {
			cmd := command(js)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr // stdout: /dev/null
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			if err != nil {
				qr.ProcessErrors++
				qr.ProcessError = fmt.Sprintf("%v: %s", err, bytes.TrimSpace(stderr.Bytes()))
				continue
			}
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			if js {
				asJSON, asJSONCPU = append(asJSON, took), append(asJSONCPU, cpu)
			} else {
				table, tableCPU = append(table, took), append(tableCPU, cpu)
			}
		}
	}
	qr.Process, qr.ProcessJSON = latencyOf(table), latencyOf(asJSON)
	qr.ProcessCPU, qr.ProcessJSONCPU = latencyOf(tableCPU), latencyOf(asJSONCPU)
}

// SearchProfileEnv names a file for a CPU profile of this process (the
// coordinator and the console both) while the console runs the worst
// query of the workload, tag:linux status:offline: where its time goes
// end to end.
const SearchProfileEnv = "JM_SEARCH_CPU_PROFILE"

// SearchAllocProfileEnv names a file for this process's allocation
// profile (pprof's allocs, every allocation since the start) written once
// the console has run the worst query: read it with -sample_index
// alloc_space, and against one taken before to see that query's share.
const SearchAllocProfileEnv = "JM_SEARCH_ALLOC_PROFILE"

func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// SearchQueries are the queries the search workload runs over m stored
// records (see StoredPeer): one name, an IP prefix (256 peers once m ≥
// 512), a tag and status, a group less the lost, recent access, everything.
func SearchQueries(m int) []string {
	return []string{
		"name:" + storedName(m/2),
		"ip:10.0.1.",
		"tag:linux status:offline",
		"group:jumpgroup:ops -status:lost",
		"last-access:<7d",
		"",
	}
}

// writeRecords writes m stored peers to the stopped coordinator's store.
func (e *Engine) writeRecords(m int) error {
	site, err := coordinator.OpenSite(e.Site.DataDir())
	if err != nil {
		return err
	}
	st, err := coordinator.OpenStore(site.StorePath(), coordinator.StoreOptions{Logger: e.cfg.Logger})
	if err != nil {
		return err
	}
	now := e.Site.Clock.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	const batch = 1000
	for from := 0; from < m && err == nil; from += batch {
		err = st.Update(func(tx *coordinator.Tx) error {
			for i := from; i < min(m, from+batch); i++ {
				if err := tx.PutPeer(StoredPeer(rng, i, now)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

var (
	storedPrefixes = []string{"web", "db", "mail", "build", "kiosk", "pos", "nas", "vpn"}
	storedTags     = []string{"linux", "linux", "windows", "macos", "linux-arm", ""}
	storedGroups   = []string{"jumpgroup:ops", "jumpgroup:dev", "jumpgroup:helpdesk", "jumpgroup:stores", "user:alice", "user:bob"}
	storedUsers    = []string{"root", "admin", "Alice", "bob", "kiosk", "svc-backup"}
)

func storedName(i int) string {
	return fmt.Sprintf("%s-%06d", storedPrefixes[i%len(storedPrefixes)], i)
}

// StoredPeer is the i-th synthetic peer record: a unique name and private
// IP (10.x.y.z from i), a random tag, group and public address, comments on
// a third, console users on half, a last access within 90 days on four
// fifths, and a last contact within 60 days before now, so that about half
// are past the default 30-day lost horizon. It was never online here.
func StoredPeer(rng *rand.Rand, i int, now time.Time) *pb.Peer {
	// An identity multihash of an Ed25519 public key, as a peer ID is.
	id := []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}
	for range 4 {
		id = binary.BigEndian.AppendUint64(id, rng.Uint64())
	}
	p := &pb.Peer{
		Id: id,
		Settings: &pb.InstallerDefaults{
			Name:           storedName(i),
			Tag:            storedTags[rng.IntN(len(storedTags))],
			Group:          storedGroups[rng.IntN(len(storedGroups))],
			ConnectionType: pb.ConnectionType(1 + rng.IntN(2)),
		},
		Info: &pb.PeerInfo{
			Hostname:   fmt.Sprintf("HOST%06d.corp.example", i),
			PrivateIps: []string{fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)},
		},
		PublicAddr:    fmt.Sprintf("/ip4/198.51.%d.%d/tcp/4001", rng.IntN(256), rng.IntN(256)),
		InstalledUnix: now.Add(-365 * 24 * time.Hour).Unix(),
		LastSeenUnix:  now.Add(-time.Duration(rng.Int64N(int64(60 * 24 * time.Hour)))).Unix(),
	}
	if i%3 == 0 {
		p.Settings.Comments = fmt.Sprintf("Rack %d, row %c; owner IT", rng.IntN(40), 'A'+rng.IntN(8))
	}
	if i%2 == 0 {
		p.Stats = &pb.PeerStats{ConsoleUsers: []string{storedUsers[rng.IntN(len(storedUsers))]}}
	}
	if i%5 != 0 {
		p.LastAccessUnix = now.Unix() - rng.Int64N(90*24*3600)
	}
	return p
}
