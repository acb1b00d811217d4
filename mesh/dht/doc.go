// Package dht is the site's private peer-routing DHT: a Kademlia DHT
// (go-libp2p-kad-dht) among the site's infrastructure nodes — the
// coordinator and the relays, later jumpoints — that answers one question:
// "at which addresses is this peer ID reachable now?".
//
// # What it is for
//
// The coordinator's registry is authoritative: a jump's grant carries the
// peer's addresses as the coordinator knows them. The DHT is the fallback
// when those addresses do not answer (the peer moved between the grant and
// the dial, or it is known to a relay better than to the coordinator), and
// the path to a site with more than one coordinator, where no single node
// sees every peer.
//
// # How a peer is found, step by step
//
//  1. Servers. The coordinator and every relay run a Node in server mode
//     with the protocol ID /jumpmesh/<site peer ID>/kad/1.0.0 (Protocol),
//     so a site's DHT never meets the public IPFS DHT (/ipfs/kad/1.0.0) nor
//     another site's. There are no public bootstrap peers: a relay
//     bootstraps from its coordinator, the coordinator from the relays it
//     knows, each only when its routing table is empty.
//  2. Routing tables hold infrastructure nodes only. A remote enters a
//     server's routing table when identify says it serves the site's DHT
//     protocol, Config.Infra accepts it, and it answers a FIND_NODE. The
//     coordinator accepts the users with the role relay; a relay, which
//     knows the site's members but not their roles, accepts any member
//     that serves the protocol. Peers and consoles never serve it. The
//     servers' own lookups (routing table refreshes) ask these nodes only.
//  3. Queries from members only. A server resets every DHT stream from a
//     remote that Config.Member refuses, before reading a byte: at the
//     coordinator, the users' keys (technicians, administrators, relays);
//     at a relay, its ACL of site members. A stranger can neither enter a
//     routing table nor ask anything.
//  4. Peers announce themselves by being connected. A peer already holds
//     a connection to the coordinator (its control stream) and to up to
//     two relays (its reservations). Identify tells each of them the peer's
//     listen and observed addresses, and pushes every change; that
//     peerstore entry is the announcement. Kademlia's FIND_NODE answers a
//     lookup for a peer ID with the target's peerstore addresses whether or
//     not the target is a DHT node, so peers run no DHT code at all.
//  5. A console looks up (Lookup). It sends FIND_NODE for the peer ID to
//     the coordinator and the relays its grant named, all at once, and to
//     every server named in an answer as soon as it is named (servers
//     name what is in their routing tables: infrastructure only). Each
//     server answers with the peer's addresses from its peerstore. The
//     lookup ends when every question is answered or has timed out
//     (AskTimeout each, the caller's deadline in all), and returns the
//     union of the addresses. The console then dials them all at once, in
//     one more connect, if any is new to it.
//
// Why peers announce nothing themselves: provider records or a signed put
// would need a DHT client on every host of the site (goroutines and
// periodic refresh queries) and republishing, to store what identify
// already delivers on connections the peer holds anyway, and could only
// say where the peer was when it last published. The servers store no
// records: provider and value records are disabled and the validator
// refuses every record.
//
// Why a console is not a kad-dht client (ModeClient): a console lives for
// one jump, and kad-dht's own FindPeer dials the target in the middle of
// the lookup with whatever addresses the first answer brought (the
// coordinator's, the stale ones at hand) and waits on that dial: a stale
// public address that drops packets holds the lookup until the dial
// times out, and the fresh addresses from a relay arrive too late for it.
// A site has a handful of servers, each in every other's routing table, so
// asking each one directly reaches them all; it needs no routing table to
// warm up and starts no workers.
//
// # What it is not
//
//   - Not authoritative. An answer is a hint to dial; the peer ID is proved
//     by the secure handshake, and a session still needs the coordinator's
//     grant. A wrong answer costs a failed dial, nothing more.
//   - Not a public DHT: own protocol ID, no public bootstrap peers, members
//     only.
//   - No content routing, no values, no provider records.
//   - Not private from members: a member that knows a peer ID can learn
//     that peer's addresses, as anything connected to the peer learns them
//     through identify. Addresses grant nothing.
//
// # One connection per relay
//
// A relay enrolls through a console client (a host of its own), closes it,
// and from then on talks to the coordinator from its relay host only, so
// the coordinator sees one connection under the relay's ID and its DHT
// streams reach the relay's DHT server.
package dht
