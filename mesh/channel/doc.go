// Package channel is the session protocol between a console and a peer:
// what flows on one libp2p stream of protocol Protocol
// (/jumpmesh/session/1.0.0; 1.1.0 and 1.2.0 below add to it). A jump session is one stream per channel: a
// shell or command, one forwarded TCP connection, or one file copy.
//
// It knows nothing of grants beyond carrying them, and runs no processes
// and opens no sockets itself (the peer and console packages do); it owns
// the framing, the handshake, the raw splice of forwards and the file tree
// format, because both sides must agree on those byte for byte.
//
// # Framing
//
// Messages are protobufs (mesh/pb/session.proto) prefixed with their
// length as an unsigned varint, at most MaxMessage bytes. A Channel reads
// the prefix one byte at a time and then exactly the body, so it never
// holds bytes that belong after the current message: a forward switches
// the same stream to raw bytes after its handshake without losing any.
//
// # Handshake
//
//  1. The console opens a stream to the peer (limited, i.e. relayed,
//     connections allowed: the stream is end-to-end encrypted anyway) and
//     writes ChannelOpen{grant, exec|forward|file}.
//  2. The peer reads it (Accept, within HandshakeTimeout), checks the grant
//     and the capability the kind needs, and answers ChannelReady: with a
//     session ID when accepted, or with a catalog error (and then closes
//     the stream) when refused. Open returns that error to the console.
//  3. What follows depends on the kind.
//
// # Grant after the open (/jumpmesh/session/1.1.0)
//
// A console that dials the peer while it asks the coordinator for the
// grant (issue 17) may open the channel before it has the grant, on
// ProtocolGrantFollows, which the peer's identify lists (a peer of an
// earlier version does not: the console then opens as above):
//
//  1. The console writes ChannelOpen{kind, grant_follows, no grant}
//     (OpenPending) as soon as it is connected.
//  2. The peer's Accept reads it and waits, at most GrantWait, for
//     ChannelGrant{grant}; it runs and admits nothing meanwhile. No
//     grant in time: the stream is reset. grant_follows on Protocol, or
//     with a grant in the open too, is a protocol error.
//  3. The console writes ChannelGrant once the coordinator granted
//     (Pending.Grant), or resets the stream (refused, or another peer).
//  4. The peer checks the grant against the open it holds exactly as in
//     step 2 above, and answers ChannelReady; the rest is the same.
//
// The round trips are those of the grant in the open; what moves off the
// jump's path is the stream's set-up on both sides.
//
// # Exec (shell or command)
//
//  4. Both sides exchange ExecMsg. Console → peer: stdin chunks, stdin_eof,
//     resize, signal ("INT", "TERM", "HUP", "KILL", sent to the process
//     group, or with a tty to the terminal's foreground group). Peer →
//     console: stdout and stderr chunks (with a tty everything is stdout).
//  5. When the process has exited and its output is drained, the peer sends
//     exit{code, signal, error} as its last message and closes its write
//     side. A command that cannot start gets exit{code 127 (not found) or
//     126, error}. A process killed by a signal reports code 128+n and the
//     signal's name.
//  6. The console closes its write side on receiving exit. A console that
//     resets the stream instead makes the peer hang up the process group
//     (SIGHUP, then SIGKILL).
//
// # Forward
//
// The peer must tell the console whether it could reach the target before
// any raw byte flows, and a refused dial should read like any other
// refusal. The handshake stays uniform (the peer always answers
// ChannelOpen with ChannelReady first, before it does anything the grant
// must authorise) and one more framed message carries the dial's outcome:
//
//  4. The peer dials host:port (TCP, within its dial timeout) and sends a
//     second ChannelReady: empty when connected, with a catalog error when
//     not (then it closes). Channel.SendStatus / Channel.ReadStatus.
//  5. From then on the stream carries raw bytes both ways (Splice). The
//     end of one direction is a half-close: TCP EOF on one side becomes
//     CloseWrite of the stream and then CloseWrite of the TCP connection
//     on the other side, so a client may close its sending half and still
//     read the answer. A reset on either side aborts both.
//
// The console does not send before the status arrives: the dial costs no
// extra round trip (the status follows ChannelReady at once), and a
// refused dial never swallows a client's bytes.
//
// # Bulk connections
//
// A forward's bytes may instead travel on a TCP connection of their own
// (bulk.go), which costs about half the CPU per byte of a stream of the
// session's muxer (no yamux copies and hand-offs, no 16 KiB TLS records).
// The console asks with ForwardOpen.bulk; a peer on a direct TCP session
// connection answers step 4 with ChannelReady{bulk: BulkOffer{ticket,
// secret, host, port}}, host being its own address of that connection and
// port a listener open while offers are pending. The console connects when
// the address it reached the peer at is host (no NAT between them, not
// relayed), sends the ticket and a hello sealed with a key derived from
// the secret, and reads the peer's hello; then it writes one byte on the
// channel, BulkChosen or BulkDeclined, and the bytes flow on the bulk
// connection or the channel. The offer travels on the end-to-end encrypted
// channel, so only the console that opened the forward holds the secret;
// the peer takes an offer once, only after its hello opens, and drops it
// when the console declines or after 2 × BulkHandshakeTimeout. The channel
// stays open while the bulk connection runs; its reset ends both.
//
// # Relayed sessions through the splice (/jumpmesh/session/1.2.0)
//
// A relayed forward's bytes go through the relay's TCP splice
// (bulkrelay.go) rather than the circuit inside its libp2p connections,
// which costs the relay about a third of the CPU per session (issue 17,
// docs/performance.md). An exec channel (a shell or a command) or a file
// copy of a relayed session moves there too, while it runs
// (bulkswitch.go). It
// starts on the circuit, as before: setting the splice up takes round
// trips to the relay that a short command should not wait for, so the
// channel moves when the bulk connection is ready, not before it starts.
//
//  1. Who asks: the console, in its open (ChannelOpen.bulk_switch, on
//     ProtocolBulkSwitch), only when all its connections to the peer go
//     through a relay and the peer's identify lists ProtocolBulkSwitch.
//     1.2.0 is 1.1.0 plus this: the grant may follow the open.
//  2. Who offers: the peer, when the console asked on 1.2.0, its own view
//     of the connection is relayed, the site allows bulk connections, and
//     the channel can pay for it (Channel.WaitBulkWorth): it has carried
//     BulkSwitchAfterBytes either way, or still runs after
//     BulkSwitchAfter; a command whose exit status went first (`true`)
//     asks the relay for nothing. Then it asks the relay for a splice
//     slot and connects to the splice as
//     for a forward, and sends BulkSwitch{offer} with the relayed
//     BulkOffer (ticket, secret, relay, slot) on the channel, end to end
//     encrypted. No slot, no offer: the console waits for nothing.
//  3. The console connects to the same relay's splice with the slot and
//     makes the bulk hello (both ends prove they hold the offer's secret;
//     the relay sees the slot, the ticket and ciphertext only). Then it
//     writes BulkSwitch{chosen} on the channel (the console's switch
//     marker: every frame it writes after it goes on the bulk
//     connection), or BulkSwitch{declined} when it could not connect
//     (the offer is dropped; the channel stays on the circuit).
//  4. The peer, reading chosen, takes the connection the hello arrived on,
//     reads from it from then on, and writes BulkSwitch{switched} on the
//     channel (the peer's switch marker: every frame it writes after it
//     goes on the bulk connection), unless its write side is already
//     closed (the exit status went on the channel).
//  5. The console, reading switched, reads from the bulk connection.
//
// A switch message follows an empty frame, which no session message is
// (every ExecMsg and FileMsg has a body); a channel that did not ask has
// no switch messages. Each direction moves at its own marker, written in order with
// the session's other frames under the channel's write lock and read by
// its one reader, so a frame is on one path or the other, never both:
// input typed before the switch, output in flight, window changes,
// signals and the exit status arrive once and in order. The frames are the
// same on the bulk connection (each inside the bulk connection's sealed
// frames); the end of a direction is its end frame and the stream's
// half-close. A reset of the channel closes the bulk connection too, so
// either side's hang-up ends the session as before; a relay that alters,
// cuts or replays the bulk connection's bytes makes the reader's frame fail
// to open or end early: the session ends with that error (the console's
// "connection lost", the peer hangs the process up), nothing is retried.
// Switch messages out of turn (an offer from the console, a second offer,
// chosen with no offer, switched with no choice) are protocol errors.
//
// Fallback, silent for the user: an older peer (no 1.2.0: the console asks
// nothing), an older console (no bulk_switch: the peer offers nothing), a
// relay without the splice or refusing a slot, a splice the console
// cannot reach or whose slot a stranger took first (the console's hello
// fails: declined). The console remembers an unreachable splice
// (SpliceMemory) and declines at once for SpliceRetryAfter.
//
// # File copy
//
// FileOpen{push, path} says who sends: push, the console sends into the
// peer's path; pull, the peer sends its path to the console. The tree
// format is the same both ways (SendTree, ReceiveTree):
//
//  4. The sender sends FileEntry for the root: its base name, mode, mtime,
//     dir flag, and size (for a directory, the total bytes of the files
//     under it, for progress). A file entry is followed by FileMsg.data
//     chunks of at most ChunkSize bytes, exactly size bytes in all, and
//     end_sha256 with the SHA-256 of those bytes. A directory entry is
//     followed by the entries of its tree, parents before children, with
//     paths "<root>/a/b" (slash separated).
//  5. The sender ends with done, or with error (its catalog error) when it
//     fails, and closes its write side.
//  6. The receiver answers once, at the end: done when every file is in
//     place, or error with its catalog error (then it discards what the
//     sender still sends until the sender closes, at most drainTimeout).
//     The sender checks for that answer between chunks, so a receiver's
//     failure stops a large copy early.
//
// The receiver, not the sender, decides the root's name when it asked for
// a path (TreeOptions.RootName): the console pulling PATH into an existing
// directory expects the base name of PATH and refuses a root entry that
// names another, before writing anything, so a compromised peer cannot
// choose DIR/.bashrc or DIR/.ssh. The peer receiving a push takes the
// console's name: the technician names the target path anyway.
//
// Safety rules, enforced by the receiver: every path must be relative,
// slash separated, without "", "." or ".." elements, and start with the
// root's name; the target is opened as an os.Root so nothing is written
// outside it, not even through a symlink already in it; a file is written
// under a temporary name and renamed into place only when its size and
// SHA-256 match, so a damaged file leaves nothing behind. Modes keep the
// permission bits (0o777) only, and mtimes are kept to the second;
// directories get theirs after their contents. The sender skips symlinks
// and special files inside a tree and lists them in TreeStats.Skipped (a
// symlink named as the root itself is followed, as cp does).
//
// # Buffer sizes
//
// Chosen by measurement on loopback, the numbers are in the comments of
// SpliceBuffer (BenchmarkSpliceBuffer, here) and ChunkSize (BenchmarkCopy
// in the console package, which also has BenchmarkForwardThroughput: a
// forward against raw TCP in the same run).
package channel
