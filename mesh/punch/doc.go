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
// A Tracer, like libp2p's holepunch.MetricsTracer, sees every attempt and
// how each punch ended, for metrics and the lab's reports.
package punch
