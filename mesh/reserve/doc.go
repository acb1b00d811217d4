// Package reserve keeps a host's reservations on its site's relays
// (circuit relay v2), so members that cannot reach the host directly — it
// is behind a NAT — reach it through a relay; hole punching (mesh/punch)
// then tries to turn such a relayed connection into a direct one. Peers
// and jumpoints use it.
//
//  1. The owner gives the Keeper the site's relays (SetRelays, /p2p/
//     multiaddrs, as the coordinator lists them) and runs it (Run).
//  2. The Keeper reserves on relays without a reservation, in the order
//     given, until it holds Config.Max (two by default), and renews each
//     a little before it ends.
//  3. A reservation lives as long as the connection to its relay: when
//     the last connection to a relay ends (the relay restarted, or the
//     network failed) the reservation is gone with it, and the Keeper
//     reserves again at once instead of at the old one's end.
//  4. A refused or failed reservation (a relay that does not know the
//     host yet refuses until its next ACL refresh) is tried again soon,
//     backing off up to the periodic check, rather than at the next check.
//
// Config.Held hears every change of the set of relays with a live
// reservation (a peer writes them into its status file); CircuitAddrs are
// the host's relayed addresses through them (a jumpoint reports them to
// the coordinator).
//
// The Keeper's waits are on wall time, not a mesh.Clock: they follow the
// reservations' expirations, which are the relay's wall time (a test's
// clock moved by days must not make a host think its reservations over).
//
// It knows nothing of the coordinator or of the party it serves: it does
// not fetch relay lists, and it does not decide whom a host trusts.
package reserve
