// Package probe opens a direct QUIC path by port-mapping probing when a
// hole punch cannot: one side ("hard") is behind a NAT that maps every
// destination to a new random port, the other ("easy") behind one that
// keeps one mapping for all destinations. It is the birthday-paradox
// method of Tailscale's NAT traversal, over UDP, ending in an ordinary
// libp2p QUIC connection.
//
// # Exchange
//
// The peer opens a stream of Protocol over the relayed connection a
// console made to it (varint-delimited protobuf, mesh/pb/probe.proto,
// messages of at most 4 KiB; the whole exchange is bounded by Timeout):
//
//  1. peer → console ProbeOffer{side, key}: what the peer knows of its
//     NAT, and 16 random bytes, the MAC key of this exchange's packets.
//  2. console → peer ProbeAnswer{side, grant} (or {refused: why}: a
//     console answers only over a connection it opened itself). grant is
//     the console's jump grant for this peer; the peer verifies it
//     (Local.CheckGrant) and aims only at the console_ip the coordinator
//     signed in it.
//  3. peer → console ProbeStart{hard, sockets, probes}: Roles decides who
//     is hard; NONE ends the exchange.
//  4. Both work at once. The hard side opens up to `sockets` UDP sockets;
//     each sends one opener to E, the easy side's NAT mapping of its QUIC
//     listening port (side.udp_mapping), OpenerGap apart: each makes a
//     mapping on the hard NAT towards E only. The easy side sends up to
//     `probes` probes from its QUIC listening socket (shared with quic-go,
//     mesh.SharedUDP) to random distinct ports of the hard side's public
//     IP, ProbeGap apart.
//  5. A hit is a probe that reached a hard socket (the probe names the
//     port it was sent to: that socket's public port), or an opener that
//     reached the easy side (a probe to that port had opened the easy NAT
//     first; the opener names its socket). The side that sees it sends
//     ProbeEvent.hit{port, index}; the easy side stops probing.
//  6. The hard side keeps that socket, closes the others, proxies it to
//     its own QUIC listener and sends ready{port, index}.
//  7. The easy side dials /ip4/IP/udp/port/quic-v1 (a forced direct
//     libp2p dial; it leaves from the QUIC listening socket, whose mapping
//     the hard socket talks to) and sends done{error, probes_sent}.
//
// Either side may send failed{why} and stop. Packets are
// 0x00 'J' 'M' 'P' | type (1 opener, 2 probe) | port u16 | index u16 |
// nonce 8 | HMAC-SHA256(key, preceding bytes)[:16]. The first byte has
// QUIC's fixed bit clear, so quic-go hands probes on the shared socket to
// us. Anything that does not verify is ignored.
//
// # Why it works: the numbers
//
// The hard side's 256 openers make 256 mappings among the ~64,500 ports
// (1024–65535) of its public IP. Each probe to a random port finds one
// with p = 256/64,512; 1,024 distinct probes miss them all with
// probability (1-p)^1024 ≈ 1.7 %: a hit in ≈ 98 % of exchanges (64 % after
// 256 probes, 87 % after 512). Probes stop at the first hit.
//
// # Why a proxy
//
// The hit is on a fresh socket of the hard side, not on its libp2p QUIC
// listener; quic-go cannot adopt a socket with a connection half-made.
// So the hard side forwards datagrams between that socket and its own
// QUIC listener (loopback, or the listen IP), and libp2p accepts an
// ordinary inbound QUIC connection from the proxy's address. The proxy
// forwards only datagrams from the hit's source address and never a probe
// packet; it outlives the exchange (the connection it carries lasts), and
// ends after ProxyIdle without a datagram either way (libp2p's QUIC keeps
// alive every 15 s), when the connection it carried closes, or when the
// host closes. Cost: two UDP sockets, three goroutines and one copy per
// datagram for the connection's life.
//
// # Budget
//
// Per exchange the hard side sends at most MaxSockets (256) openers, 1 ms
// apart (≥ 255 ms), and the easy side at most MaxProbes (1,024) probes,
// 2 ms apart (≥ 2.05 s, ≤ 500 packets/s, ~60 bytes each: ≤ 30 kB/s);
// the limits hold whatever the remote asks (its numbers are clamped). The
// caller (mesh/punch) runs at most two exchanges per relayed connection
// and one at a time per host: ≤ 2,560 packets towards one address.
//
// # What each party can make it do
//
//   - A stranger on the network cannot fake a hit (it does not know the
//     key, sent only over the end-to-end-encrypted stream); its
//     datagrams to a hard socket or to the proxy are dropped, and it
//     learns at most that a probe passed. One on the path, able to spoof
//     the remote's address, can replay a packet towards another socket
//     and spoil that exchange (as dropping packets would), or reach the
//     proxy's QUIC listener, which authenticates as on its public port.
//   - A peer (or a compromised one) can make a console send at most the
//     budget above, only to the IP the console was allowed (an IP of the
//     peer's addresses the coordinator gave it): never to a third party.
//     It cannot make a console probe over a connection the peer opened.
//     As the hard side, it can make the console's libp2p dial go only to
//     that IP, at the port its ready names.
//   - A console can make a peer send the budget only to the console's
//     public IP the coordinator saw (the console_ip of a grant that
//     verifies, Local.CheckGrant, and Local.Allowed),
//     and make it run a proxy that forwards only from that exchange's hit
//     address to the peer's own QUIC listener: the same libp2p listener
//     it already reaches through the relay, so no new access.
//
// The package must not choose whom to probe: the caller gives Allowed and
// the sides, and decides when to run an exchange.
package probe
