// Package relay is the site relay daemon (`jumpmesh relay run`): a libp2p
// circuit relay v2 node that carries a session between a console and a
// peer when neither can reach the other directly, for members of one site
// only.
//
// # What happens, step by step
//
//  1. Enrollment (first run). An administrator runs `jumpmesh relay invite
//     NAME`, which creates a user with the role relay and a one-time code.
//     The relay redeems it as every site member does (mesh/member): it
//     makes its Ed25519 key (DataDir/relay.key, mode 0600) and records the
//     site, its user and role (DataDir/relay.json). That key is the relay's
//     libp2p identity, so the coordinator knows the relay's peer ID as a
//     member like any other. A data directory made by an older release
//     (technician.key, console.json: the relay enrolled as a console) is
//     renamed to these names on start, keeping the relay's identity; one
//     enrolled with another role's invite is refused.
//  2. First ACL fetch. Before it relays anything, the relay sends the
//     control request RelayACL with the addresses it listens on. The
//     coordinator records them (it hands live relays to peers and consoles)
//     and answers with the site's members: its own peer ID, every peer not
//     deleted, every user's console keys (relays included), and the refresh
//     period. A relay that cannot fetch this list does not start.
//  3. Serving. The circuit relay v2 service (go-libp2p) accepts a
//     reservation (HOP RESERVE) from a member only, and a connect (HOP
//     CONNECT, then STOP to the destination) only when both ends are
//     members. Every refusal is counted by reason. A relayed connection is
//     not limited in time or bytes; the relay only copies bytes, which are
//     end-to-end encrypted between console and peer (TLS or Noise inside
//     the circuit), so the relay never sees a session in clear.
//  4. Refresh. Every period (30 s by default, as the coordinator says) the
//     relay fetches the list again and swaps it in atomically; peers that
//     left the list (a removed technician, a deleted peer) have their
//     connections closed, which ends their reservation and circuits. A
//     failed fetch keeps the last list and is logged; the coordinator stops
//     handing out a relay that has not refreshed for three periods, and
//     /healthz turns unhealthy at the same point.
//
// A member enrolled after the last fetch is refused until the next one (at
// most one period); its go-libp2p client retries its reservation.
//
// # Relayed bulk connections (splice.go)
//
// A forward on a relayed session can leave the circuit for a TCP
// connection of its own that the relay splices, so that the relay copies
// it with splice(2) and no cryptography (the circuit costs the relay a TLS
// open and seal and a yamux copy per byte, and the ends a second TLS and
// yamux layer):
//
//  1. The peer, serving a forward whose console asked for a bulk
//     connection on a relayed session, asks the relay of that session for
//     a slot on /jumpmesh/relay-bulk/1.0.0, over its own authenticated
//     libp2p connection. Only members get one (the ACL as for circuits);
//     the answer is a random 16-byte token and the splice listener's port.
//     A slot lasts 10 s and is used once; a member holds at most 16
//     unpaired, the relay 1,024, and slots with running splices stay
//     within MaxCircuitsPerPeer and MaxCircuits.
//  2. The peer opens a plain TCP connection to the splice listener, on the
//     address it reached the relay at (Config.SpliceAddr; port 4836 by
//     default), sends the token and its side ('p'), and puts the relay's
//     peer ID and the token in the forward's BulkOffer, on the end-to-end
//     channel.
//  3. The console, when the offer names the relay its own connection goes
//     through, opens its own TCP connection to that port on the address it
//     reached the relay at and sends the token and its side ('c'). The
//     relay pairs the two (opposite sides, the same live slot) and hands
//     them to one of its splice loops (spliceloop.go: one epoll loop for
//     every two cores, each serving every splice given to it with splice(2)
//     through a pipe, the sockets out of Go's netpoller), which copies each
//     direction until its half-close (passed on), the data limit
//     (Resources.CircuitData per direction) or the duration limit
//     (CircuitDuration); members that leave the ACL lose their slots and
//     splices at the next refresh.
//  4. Through the splice, console and peer run the ordinary bulk
//     connection (mesh/channel/bulk.go): ticket, hellos proving both hold
//     the offer's secret, AES-128-GCM frames. The relay sees the token, the
//     ticket and ciphertext.
//
// The token crosses the network in clear: whoever sees it may reach the
// relay first and be paired with the peer, but cannot make the bulk hello
// without the secret, so the peer refuses it and the console falls back
// to the channel. A relay that lies (pairs the console with someone else)
// gets the same: a failed hello, and the forward on its channel. Any
// failure (a relay without the service or with Config.SpliceAddr "off", a
// refused slot, an unreachable splice port) leaves the forward on its
// channel inside the circuit, as before, and a side that could not reach
// the splice skips that relay's for 5 minutes; the site setting
// bulk-connections=false and forward --no-bulk turn relayed bulk
// connections off with the direct ones. A console that predates them sees
// an offer on the address [::], which it never reached a peer at, and
// declines it.
//
// # Sessions through the splice, not a cheaper circuit (issue 17)
//
// A relayed session's long-lived bytes (a screen, a shell, an exec's
// output, a copy) are to reach 2,000 sessions of 200 kB/s per relay core
// (RustDesk's relay, which copies TCP without cryptography: about 1,000).
// Decided: every long relayed channel leaves the circuit for a bulk
// connection through the relay's splice, as forwards do; end-to-end
// encryption stays between console and peer, the relay copies ciphertext.
// Not a cheaper circuit, because the circuit's cost is per frame and most
// of it is fixed by what a circuit is: each 6.7 kB frame of a screen is
// one record of the hop's TLS to open and one to seal (the relay must,
// since the hop's TLS is what authenticates members), a yamux frame each
// way, and three goroutine hand-offs (the hop's receive loop, the copy
// loop, the other hop's send loop) — 1,409 relay-CPU-µs per
// session-second measured on a quiet machine (709 sessions per core),
// with AES-GCM, system calls and memmove most of it. Taking out the
// yamux send goroutine or one copy would not find the factor of 2.8 the
// goal needs; dropping the hop's TLS would drop member authentication on
// the data path. The splice keeps only the kernel's work: per frame, a
// splice(2) from the socket into the loop's pipe and one out of it to the
// other socket, no user-space copy, no cryptography, no yamux, and no
// goroutine per splice.
//
// BenchmarkRelaySessionsPerCore measures both paths in one run, each
// session holding its circuit and a spliced bulk connection (AES-GCM
// frames end to end) and writing its screen on one, then the other. With
// io.Copy (two goroutines per splice, splice(2) into a pipe, out of it and
// once more to find nothing, then Go's netpoller) the relay spent 639–717
// µs per session-second on a quieter machine: 1,395–1,565 sessions per
// core, each 6.7 kB frame waking the relay alone (an epoll wait, a thread
// woken, a goroutine scheduled, three splice calls). The splice loops
// (spliceloop.go, issue 17 session 26) take that to two splice calls per
// frame and one wake-up for every socket ready at that moment, and when a
// loop reads more than 2,000 times a second they let frames gather after
// each batch, so that the next wake-up finds several: for as long as 32
// reads take to come at the loop's rate, between 0.25 and 1 ms, so a byte
// waits at most 1 ms more in a busy relay, none in a quiet one, and a
// bulk transfer (a read that fills the pipe) never waits. Since session
// 27 the loops make the calls that never block (the splices, an
// epoll_wait that does not wait, the gathering's sleep) as raw system
// calls, which Go's scheduler does not see: made the ordinary way, every
// one of them offered the loop's processor to another thread and kept the
// scheduler's monitor thread ticking every 20 µs (7 % of the relay's CPU,
// half its thread switches). Only the wait for the next event, when none
// is ready, goes through the scheduler. Since session 28 the loops turn
// quick ACKs off (TCP_QUICKACK) on a socket before they read it, again
// after a gap in its frames long enough for the kernel's delayed-ACK
// timer, which ends that mode: a screen's stream is one-way, and the
// kernel acknowledged every frame the relay read at once, from the read,
// on the relay's CPU; now it acknowledges every second frame. No byte
// waits for an ACK (the ends send with TCP_NODELAY). On loopback the ACKs
// left are sent from the sender's side of the delivery, so the relay's
// process saves more than the machine does. docs/performance.md has the runs. A splice costs the relay two file
// descriptors (its sockets) and no goroutine; a direction whose reader is
// slow holds a pipe (two more) until it has caught up. What is wired
// today: forwards (peer/forward.go, console/forward.go). Shells, screens,
// exec and copies still run on their channels inside the circuit; giving
// them the bulk connection is the next step, in the peer's and console's
// session code (the offer on the channel's status, as a forward's).
//
// # Limits
//
// Every bound (buffer size, reservations, circuits, per-peer and
// per-IP limits, connections) is in Resources; DefaultResources explains
// each value.
//
// # Measured
//
// docs/performance.md has the method, the machine (a 2-core AMD EPYC VM shared
// with the load generator) and the numbers; in short:
//   - sessions of 200 kB/s per core of relay CPU: about 1,600 in the
//     circuit on 2026-11-22 (709 on a quiet machine on 2026-12-03, 1,409
//     µs per session-second), 1,395–1,565 through the splice with
//     io.Copy, more with the splice loops (docs/performance.md);
//   - relayed ÷ direct throughput of one stream on loopback: 0.31, which
//     is the CPU bound when the relay shares the ends' two cores (a relayed
//     byte costs 3.3 times the CPU of a direct one in all); a forward
//     through the relay's splice: see docs/performance.md ("Relayed
//     sessions"), the relay's CPU per byte a small fraction of a circuit's;
//   - memory per idle circuit: 74 KB of heap (two 32 KiB buffers), 8 KB of
//     stacks, 2 goroutines.
//
// # What it must not do
//
// The relay never relays for a stranger, never terminates or inspects a
// session, and keeps no state but its key and enrollment: the coordinator
// is the authority on who is a member. It does not import the coordinator
// or peer packages; it talks to the coordinator only through the control
// protocol, as a console does.
package relay
