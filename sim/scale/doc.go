// Package scale is the lab's scale engine: hundreds to tens of thousands
// of peers against a real coordinator in this process, for registration
// storms, lifecycle horizons and search at scale (`jumpmesh sim scale`,
// and the peer/ scale benchmarks through its Fleet).
//
// Everything is real but the clock: the coordinator is coordinator.New over
// a real Badger in a directory, on a real libp2p host listening on loopback
// TCP and QUIC ports that survive its restarts; the administrator logs in
// from a real console; the peers are a Fleet of real libp2p hosts, one
// fresh key each, speaking the peer protocol as peer.Daemon does (hello
// with the installer key, retry-after, welcome, statistics, the daemon's
// capped exponential backoff with full jitter); with Config.Jumpoint they
// sit behind a jumpoint (the real daemon, jumpoint.New) and reach the
// coordinator only through its tunnels, as peers installed with a key
// naming it do. The coordinator's clock is
// a mesh.ManualClock, so lifecycle horizons of months pass in milliseconds;
// admission pacing runs on the wall clock, as in the coordinator.
//
// Workloads, in the order Run runs them:
//
//   - storm: N peers register, started at a rate or all at once. Reports
//     peers per second (N over the time from the first start to the last
//     first welcome), each peer's registration latency (its start to its
//     first welcome: percentiles), memory per online peer (heap and stacks
//     after a GC with every peer online, less the same with the fleet's
//     hosts built but not connected, over N), and failed attempts,
//     retry-afters, refusals and peers told to uninstall.
//   - reconnect: with every peer online, the coordinator stops and starts
//     again on the same ports; time from the stop until every peer is
//     online again, and its ratio to the storm's time.
//   - lifecycle: the fleet stops; once the coordinator has every peer
//     offline, the injected clock moves to just before and at the site's
//     lost and delete horizons; at each step the coordinator's sweep runs
//     (timed) and the peers are counted by status as the administrator sees
//     them (online, offline, lost, deleted).
//   - search: M synthetic peer records (StoredPeer) are written to the
//     stopped coordinator's store, which then loads them at start; each of a
//     few queries (SearchQueries) runs SearchRuns times in the control
//     service in this process and through the administrator's console over
//     libp2p, as `jumpmesh ls` does: match counts and latency percentiles.
//     With Config.ConsoleBinary (`jumpmesh sim scale` sets it to itself)
//     each query also runs as the command, `jumpmesh ls` and `ls --json`,
//     each run a process of its own with a second administrator's console
//     home, timed from its start to its exit.
//
// Which figure issue 16's goal (`ls` p99 ≤ 20 ms end to end at 100,000
// stored peers) is judged on: the command's, SearchResult.ProcessGoalRatio,
// printed as `search goal-ratio`. "End to end" is what a technician waits
// for, and a technician runs a command: a process that starts, builds its
// libp2p host, dials the coordinator and makes the TLS handshake, asks,
// prints and exits. The console in this process (GoalRatio, printed as
// `search in-process goal-ratio`) leaves out all of that but the call and
// the printing, and shares its heap and collector with a coordinator
// holding 100,000 records (≈260 MB), whose markings a real console never
// waits for: it measures what the search and the reply cost, which is what
// grows with the stored peers, and stays beside the command's figure for
// that. The query matching one peer (SearchQueries' first) is the
// command's floor at any size: what is left above it is the list's.
//
// Where the peers run (fleetplan.go): in this process while they fit its
// open-file limit (both ends of every connection are its files), else in
// fleet processes of their own — a command that serves ServeFleetProcess,
// `jumpmesh sim fleet` for the command, the test binary for tests — as few
// as hold them, and the peers the coordinator's limit cannot hold over TCP
// (one socket each) come over QUIC (one socket for all). A fleet process
// speaks a line protocol on its stdin and fd 3 (fleetchild.go; the events
// of the peer/ benchmarks' fleet children), dies with its parent (SIGKILL
// when the parent goes, and the end of its stdin), and one that ends
// unasked fails the run with its stderr instead of letting it wait out its
// timeout. On a 2-core VM whose hard limit is 20,000 open files, 20,000
// peers are 9,744 + 9,744 over TCP in two processes and 512 over QUIC in a
// third.
//
// With the fleet in this process, memory per online peer counts both ends
// of every connection (Memory.Ends "both"); with fleet processes it is the
// coordinator's alone ("coordinator"), as the peer/ benchmarks'
// BenchmarkOnlinePeerMemory measures it. The fleet shares the machine's
// CPUs with the coordinator either way. Figures of a 2-core machine are in
// docs/performance.md.
//
// The package never needs root and never touches the network beyond
// loopback. It must not be imported by the parties (coordinator, peer,
// console): it is a load generator and a measuring harness.
package scale
