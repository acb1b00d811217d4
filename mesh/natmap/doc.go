// Package natmap tells what a NAT does with a socket's flows, from the
// external ports observers saw, and predicts the port the NAT will give
// that socket's next flow, so that a hole punch can aim at it.
//
// A host behind a NAT sends from one socket to two or more observers (the
// coordinator and a relay, each reporting the address it saw, as libp2p's
// identify does). In time order, the observations say which of these the
// mapping is:
//
//   - endpoint-independent: every observer saw the same port; the next
//     flow will use it too (RFC 4787's endpoint-independent mapping, the
//     lab's easy and cgnat presets);
//   - sequential: each new destination got a port a small step above the
//     one before, as enterprise firewalls allocate from one counter (the
//     lab's sequential preset); other hosts' flows through the same NAT
//     take ports from that counter meanwhile, so the step is seldom one;
//   - random: the ports follow no order (Linux masquerade fully-random, the
//     lab's hard preset); nothing can be predicted, and a caller falls back
//     to probing many ports (the birthday paradox) or stays relayed;
//   - unknown: fewer than two destinations were observed, and those
//     observed saw one port (one destination that saw several ports
//     for new flows of the socket tells sequential or random).
//
// For a sequential mapping, Next lists the likeliest ports of the next
// flow, best first: around the last port plus the step (or, when the
// observations carry times, plus one and the ports other hosts took at the
// rate they were seen taking them), nearest first. Probes turns that list
// into a paced plan of packets that never exceeds PacketBudget.
//
// The package only computes: it opens no socket and sends nothing. It must
// not be used to aim packets at any address but the one the observers saw
// for the other member of a granted session (the puncher's rule).
package natmap
