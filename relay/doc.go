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
//     relay pairs the two (opposite sides, the same live slot) and copies
//     each direction with io.Copy between the two *net.TCPConn, which Go
//     does with splice(2) on Linux, until its half-close (passed on), the
//     data limit (Resources.CircuitData per direction) or the duration
//     limit (CircuitDuration); members that leave the ACL lose their slots
//     and splices at the next refresh.
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
//   - sessions of 200 kB/s per core of relay CPU: about 1,600 (500 and
//     1,000 sessions, every session kept its rate), 1.6 times the 1,000
//     per core quoted for RustDesk's relay;
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
