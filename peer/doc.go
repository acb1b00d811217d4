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
package peer
