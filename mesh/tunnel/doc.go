// Package tunnel is the jumpoint's tunnel protocol (/jumpmesh/jumpoint/1.0.0):
// a libp2p stream to a jumpoint that the jumpoint joins to one TCP
// connection it opens on a network it serves.
//
//  1. The caller (a peer behind the jumpoint, or a console) opens a stream
//     to the jumpoint with protocol ID Protocol and writes one
//     pb.TunnelOpen: the target host:port and what entitles it (a console's
//     jump grant, a new host's installer key, or nothing for a peer the
//     jumpoint's ACL names).
//  2. The jumpoint authorizes it (the Authorize function the jumpoint
//     gives Serve), dials the target over TCP and writes one pb.TunnelReply,
//     with a catalog error if either failed.
//  3. From then on the stream carries the TCP connection's bytes both
//     ways; either end's close ends both.
//
// What runs inside is the caller's own libp2p connection, secured end to
// end (TLS or Noise) between the caller and the target's host: the
// jumpoint relays ciphertext. Dialer plugs tunnels into libp2p's TCP
// transport (tcp.WithDialerForAddr), so a host whose network has no route
// to the site dials the coordinator, or a console dials a peer behind a
// jumpoint, as if over TCP.
package tunnel
