// Package punch opens direct connections for the relayed ones a peer
// accepts: the peer's hole-punch initiator.
//
// A console reaches a NATed peer through a relay; the peer, which receives
// that relayed connection, starts DCUtR (libp2p's /libp2p/dcutr protocol,
// which the console serves with libp2p's own hole-punching service): both
// sides exchange their public addresses over the relayed connection,
// measure its round trip, and dial each other at the same moment so each
// NAT sees its own outgoing packet before the other side's arrives.
//
// libp2p's initiator starts once per relayed connection, after identify
// has run over it, and gives up for good when the exchange cannot start —
// typically because the console, a process started a moment ago, has not
// yet learnt its own public address and so does not serve DCUtR yet. The
// Puncher replaces it on peers: it starts as soon as the relayed
// connection exists (identify's round trip is not needed: the console's
// addresses come in the exchange), and retries with backoff while the
// relayed connection lives and no direct one exists.
//
// The addresses a peer offers in the exchange are its NAT's mappings of
// its listening port as trusted observers saw them through identify. A
// NAT that gives each new flow the next port of a counter (an enterprise
// firewall; the lab's sequential preset) maps the punch's own flow to none
// of them, so the Puncher keeps the TCP flows it saw observed (by when the
// connection opened) and asks natmap what they show: for a sequential NAT
// it offers the next natmap.MaxCandidates ports instead, best first, and
// the console's simultaneous dial tries each (the packet budget natmap
// states). A peer reaches the coordinator over TCP and relays over QUIC,
// so it has one TCP observation: once it is connected to a second trusted
// peer, the Puncher makes one more flow from the listening port to it
// (dialled with the TCP transport, asked identify's question, closed; not
// added to the swarm) to tell the NAT's kind, and before each punch
// through a sequential NAT it makes another, so the prediction starts from
// the counter's latest port.
//
// Punches race QUIC against TCP. Besides its TCP mapping the peer offers
// its QUIC listening port's mapping when what its trusted observers saw
// shows one port for every destination (quicAddr: none when UDP is
// blocked or the UDP mapping is hard or sequential); a console's
// QUICOffer learns its own QUIC mapping from one QUIC flow to the
// coordinator and to a relay (consoles reach both over TCP) and adds it to
// what libp2p's service offers. Both sides dial every offered address at
// once (the swarm does not rank a simultaneous connect's dials), so QUIC,
// whose handshake and TLS take one round trip, wins where UDP passes, and
// a QUIC path that does not open costs TCP nothing. As the SYNC leaves,
// the peer sends one datagram that is not QUIC to each QUIC address of the
// console (openQUIC), so that its NAT is open when the console's Initial
// arrives.
//
// NAT reports what those observations show of the host's NAT, for the
// peer's statistics (`jumpmesh show`): the TCP and UDP mapping kinds,
// whether the NAT kept the listening port, and how many trusted peers
// observed. For UDP, which no punch uses, the Puncher makes one QUIC flow
// to a trusted peer it reaches over TCP (observeudp.go); when that fails
// and no QUIC flow was ever seen, UDP is Blocked. Hairpin tests whether
// the NAT hairpins: the peer sends a datagram from a fresh socket to the
// QUIC port's public mapping (UDPPublic) and watches for it on that port
// (hairpin.go). The report is the host's own account: a coordinator shows it
// and must not authorise anything on it.
//
// A Tracer, like libp2p's holepunch.MetricsTracer, sees every attempt and
// how each punch ended, for metrics and the lab's reports.
package punch
