// Package jumpoint is the jumpoint daemon (`jumpmesh jumpoint run`): a
// site member on a network with no route to the Internet (or to the
// site) that carries TCP connections for the site's members between that
// network and the rest of the site, so hosts on it can run peers and
// technicians can reach them.
//
// # What happens, step by step
//
//  1. Enrollment (first run). An administrator runs `jumpmesh jumpoint
//     invite NAME`, which creates a user with the role jumpoint and a
//     one-time code. The jumpoint redeems it as every site member does
//     (mesh/member): it makes its Ed25519 key (DataDir/jumpoint.key, with
//     mode 0600) and records the site, its user and role
//     (DataDir/jumpoint.json).
//     That key is the jumpoint's libp2p identity. A directory enrolled with
//     another role's invite is refused.
//  2. First ACL fetch. Before it serves anything, the jumpoint sends the
//     control request jumpoint_acl with the addresses it listens on and its
//     counters. The coordinator records them (installer keys that name the
//     jumpoint carry these addresses) and answers with a JumpointACL: the
//     jumpoint's name, the peers installed to use it, the technicians'
//     console keys, the site's addresses (coordinator and live relays) and
//     the refresh period. A jumpoint that cannot fetch it does not start.
//  3. Serving. The jumpoint's host (TCP and QUIC, port 4833 on every
//     interface by default) serves the tunnel protocol (mesh/tunnel): a
//     caller opens a stream and names a TCP target; Rules.Authorize
//     decides, by the five rules written there, whether this caller may
//     reach that target; the jumpoint dials it and copies bytes both ways.
//     What a tunnel carries is the caller's own libp2p connection,
//     encrypted end to end (TLS or Noise) between the caller and the
//     target: a peer's connection to its coordinator, a console's to a
//     peer. The jumpoint sees ciphertext only. Every refusal is counted by
//     reason and logged.
//     A jumpoint behind a NAT is reached like a NATed peer: its host is a
//     relay client that keeps reservations on the site's relays (the
//     ACL's site addresses that are not the coordinator's; mesh/reserve),
//     reports the circuits through them with its addresses, and runs the
//     puncher (mesh/punch), trusting only the coordinator and those relays
//     as observers. A tunnel over a relayed connection is judged like any
//     other.
//  4. Refresh. Every period (30 s by default, as the coordinator says) the
//     jumpoint reports again and swaps in the new ACL atomically; callers
//     that left it (a removed technician, a deleted peer) have their
//     connections closed, which ends their tunnels. A tunnel asked for by
//     a caller the ACL does not know triggers an early refresh (at most
//     every 2 s) and waits for it, so a peer that just enrolled through
//     the jumpoint is served at once. A failed fetch keeps the last ACL;
//     /healthz turns unhealthy after three periods without one.
//
// # Agentless targets
//
// An administrator may give the jumpoint an allow list (`jumpmesh jumpoint
// set NAME --allow 10.20.0.0/16:22`): hosts on its network that run no
// peer. A technician's grant may then name this jumpoint and one target
// instead of a peer (rule 4); the ACL carries the list and the jumpoint
// checks it at every tunnel. These tunnels carry the target's own
// protocol, not an end-to-end encrypted libp2p connection. Each one is
// counted (tunnellog.go) and reported when it ends with the next refresh;
// the coordinator writes it to its audit log.
//
// # Wake
//
// The jumpoint is the waker of the peers behind it (mesh/wake, wake.go):
// the coordinator opens a wake stream on the jumpoint's connection and
// orders magic packets for a sleeping peer, sent on the interface whose
// subnet holds one of the peer's private IPs (else the one toward its
// gateway; never the default route's), or a passive peer's signed command
// forwarded to its passive port. Only the site is served, and only
// commands it signed are carried out.
//
// # Limits
//
// Every bound (tunnels in all and per caller, connections, the target
// dial timeout) is in Resources; DefaultResources explains each value. A
// tunnel is not limited in time or in bytes carried; Resources.MaxTunnelRate
// may cap its speed.
//
// # What it must not do
//
// The jumpoint never opens a tunnel for a stranger, never to a target
// outside the set its rules give the caller, never terminates or inspects
// what a tunnel carries, and keeps no state but its key and enrollment:
// the coordinator is the authority on who is a member. It does not import
// another party (coordinator, peer, relay, console); it talks to the
// coordinator only through the control protocol.
package jumpoint
