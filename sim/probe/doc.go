// Package probe is the lab's "what is my address" service, in the spirit of
// STUN's binding request but in plain text: a probe server answers every
// UDP datagram and every TCP connection with the source address and port it
// saw. From a host behind a NAT, probes to two servers tell the mapping
// behaviour (same public port to both, or a new one per destination).
//
// Messages, one per datagram (UDP) or line (TCP):
//
//	client → server (UDP only):  JMPROBE1 <token>
//	server → client (UDP):       JMPROBE1 <token> <observed ip:port>
//	server → client (TCP):       JMPROBE1 - <observed ip:port>\n  then close
//
// The token, chosen by the client, pairs a reply with its request; a UDP
// client retries until a reply arrives, so probes work over lossy links.
// Probes are for the lab's namespaces only: they never choose a destination
// of their own.
package probe
