// Package peer is the Jump Client: what runs on an enrolled host. It
// installs itself from an installer key into its own directory (binary,
// config, key, init script, uninstall script, systemd unit), registers with
// the site's coordinator, reports statistics, and keeps the lifecycle rules
// even when the coordinator is out of reach: it uninstalls itself when it
// never reached the coordinator within its installer's validity, or when it
// stayed offline longer than its offline limit.
//
// It must not import the coordinator: everything crosses the wire.
//
// # Peer protocol (/jumpmesh/peer/1.0.0)
//
// An active peer holds one stream to the coordinator for as long as it is
// online; messages are length-delimited protobufs (pb.PeerUp up, pb.PeerDown
// down), as on the control protocol.
//
//  1. The peer dials the coordinator (addresses from its installer key) and
//     opens a stream. Noise authenticates both sides: the peer checks it
//     reached the site's pinned peer ID, the coordinator learns the peer's.
//     A peer whose key names jumpoints dials through a tunnel to one of
//     them (jumpoint.go), secured end to end all the same.
//  2. The peer sends PeerUp{hello}: its installer key, host facts (name, OS,
//     private IPs, default gateway IP and MAC, console users), its
//     install-time overrides and whether it is disabled.
//  3. The coordinator admits the hello through the site's connection rate
//     (token bucket). Over the rate it answers PeerDown{retry: after} and
//     closes; the peer waits that long (plus jitter) and starts again.
//  4. An unknown peer ID enrolls: the installer key must be valid, of this
//     site and not revoked; overrides must be allowed by it; the build limits
//     must not be reached. A refusal is PeerDown{error: catalog code}.
//  5. A peer deleted at the coordinator gets PeerDown{uninstall} and
//     uninstalls itself. Otherwise the coordinator answers
//     PeerDown{welcome}: the peer's record and what the peer must know
//     offline (delete horizon, statistics interval, restrictions).
//  6. The peer then sends PeerUp{stats} every statistics interval,
//     PeerUp{state} when disabled or enabled, PeerUp{goodbye} when its host
//     uninstalls it. The coordinator may send PeerDown{update} (settings
//     changed) or PeerDown{uninstall} at any time.
//  7. A stream that ends, or stays silent for three intervals, means the
//     peer is offline. The peer reconnects with capped exponential backoff
//     and full jitter.
//  8. Revocation. When grants the coordinator issued earlier no longer
//     hold, it sends PeerDown{revoke} to the online peers concerned, at
//     once (without waiting for the admin's request to finish):
//     - a user removed: every online peer, naming the user's console keys;
//     - a peer's group, jump policy or session policies changed (peer set):
//     that peer, all technicians;
//     - a session policy's rules changed: the peers that use it, all
//     technicians;
//     - a jump window closed (the coordinator checks every
//     coordinator.JumpWindowCheck on its own clock, and at once when a jump
//     policy is changed): the peers whose window closed, all technicians.
//     The message carries issued_through_unix on the coordinator's clock;
//     every grant the coordinator issues afterwards is stamped later (see
//     mesh/grant). The peer then (a) refuses, with grant_revoked, every
//     channel presenting a covered grant, also a grant it has not seen yet,
//     and (b) closes the channels covered grants opened: their work is
//     cancelled and their streams reset, so the console sees them end. A
//     console that still may jump asks for a fresh grant; one that may not
//     is refused by the coordinator. A peer offline at the coordinator
//     misses the message; grant.Limits.OpenFor bounds how long a grant
//     opens channels anyway (grant_expired after it).
//  9. Wake. The coordinator may open a wake stream (mesh/wake) on the
//     peer's connection and order it to wake a neighbour: magic packets on
//     its interface toward the target's gateway, or a passive peer's
//     signed command forwarded to its passive port (wake.go). Only the
//     pinned site is served, and only commands it signed are carried out.
//  10. Passive. A peer whose connection type is passive (the welcome's
//     peer record; before the first welcome, its installer key's) listens
//     on its passive port while it runs. After passive_idle_seconds with
//     no session channel open it sends PeerUp{passive{port}}, closes the
//     stream and every connection, drops its relay reservations, and only
//     listens; a wake command the listener accepts makes it connect at
//     once, with no backoff (passive.go).
//
// # Lifetime
//
// A Daemon runs once: Run returns only when everything it started has
// ended (the coordinator stream and its reader, the reconnect wait, the
// statistics timer, the relay reservations, the puncher, every channel
// being served, ended by resetting its stream, the wake orders being
// served, the passive listener), and Close ends Run, waits
// for it and then closes the host. Decision: the reconnect backoff, the
// statistics interval and a passive peer's idle time are timers of the
// daemon's clock (RunConfig.Clock), so tests and the lab move them with
// a manual clock; the expiry of wake commands is checked on wall time, as
// the coordinator signs it (wake.go); the relay
// reservations' checks stay on wall time, because a reservation's
// expiration is the relay's wall time and a manual clock moved by days must
// not make the peer think it over; stream deadlines are wall time too.
//
// # Local users (an install by root with --user U)
//
// Root runs the init-script (at boot, for status and stop), the uninstall
// script and the jumpmesh binary, and systemd reads the unit; the daemon
// runs as U. So everything root executes or trusts is root's and not
// writable by U: the install directory itself (root, group U, 0750, so U
// can neither replace a file nor add one), jumpmesh, init-script, uninstall,
// jumpmesh-peer.service, and config.json (root, group U, 0640: U's daemon
// reads the installer key and the pinned site in it). U owns only what the
// daemon writes or must read as itself: var/ (state.json, disabled), logs/,
// run/ (peer.pid) and peer.key (a key file must be 0600 and the daemon's;
// root never executes it and uses it only to say goodbye when uninstalling).
// Root reads U's files without following links or blocking on FIFOs, and
// writes into var/ only by rename.
//
// run/peer.pid is U's, so root signals a PID only if /proc/PID/exe is this
// install's binary and the process belongs to the owner of run/ (U): the
// init-script's is_peer, isPeerProcess here. Anything else gets "not this
// peer" from init-script stop, and no signal from peer disable/uninstall.
// Both need Linux's /proc; without it nothing is signalled.
//
// restrict-local-uninstall (local disable, enable and uninstall are root's
// only) cannot live in a root-only file: the daemon, which learns it from
// the coordinator, runs as U. Decision: the coordinator signs a statement
// for each peer in every welcome and update (mesh/localpolicy: site, peer
// ID, the restriction, issued-at; domain-separated); the daemon keeps it in
// var/state.json, and the local commands verify it against the site pinned
// in the root-owned config.json and the peer ID recorded there. Editing the
// flag breaks the signature; another peer's statement names another peer;
// deleting it leaves none, and an install by root without a valid statement
// counts as restricted (fail closed; a new install is thus restricted for
// U until its first welcome). The daemon itself goes by the statement of
// its last welcome or update, held in memory, and a disabled marker that
// is not root's counts only while unrestricted, so `touch var/disabled`
// does not disable a restricted peer either.
//
// Limits, accepted: U can put back an older statement of this same peer
// from a time the site did not restrict (issued-at only orders them). That
// fools the local command's early answer and a daemon started while the
// coordinator cannot be reached (when no grant can be issued for the peer
// anyway); a running daemon ignores the file once it has been welcomed, so
// the coordinator never sees the peer disabled by U. More generally the
// restriction binds U only through the tools: U runs the daemon and reads
// its key, so U can always stop the process (the peer shows offline) or run
// a modified one. Against other local users it is complete: they cannot
// enter the install directory. An install by U for itself is all U's, so a
// restriction there is advisory (a statement is still needed to lift it,
// but the files are U's to delete). Installs made before var/ existed keep
// their old layout (everything U's) and must be reinstalled to get this.
package peer
