// Package netlab builds network topologies for the jumpmesh lab out of real
// Linux network namespaces: a lab "internet" (198.51.100.0/24 and
// 203.0.113.0/24 on one bridge), networks behind NAT routers with RFC 4787
// presets (public, easy, hard, sequential, cgnat, udp-blocked, isolated)
// made with nftables, and hosts with their own namespace and address.
// Sequential is an enterprise firewall's allocation: every new flow takes
// the next port of a per-protocol counter (nftables numgen inc in the SNAT
// rule; Linux's own allocator keeps the source port or, on a clash, draws a
// random one, and never counts).
//
// Cables are veth pairs, or, when a link has latency, two TAP devices joined
// by a wire in this process that delays each frame in user space (the
// kernel has no netem). Loss is nftables numgen at each end's ingress,
// bandwidth is TBF on each end's egress.
//
// A lab runs processes inside a host's namespace and tracks them by PID. It
// names every namespace, interface, nft table and owner file with its run's
// prefix ("jmlab-<id>-"), so Clean can remove exactly what a crashed run
// left and nothing else. Close removes everything the lab made and checks
// that nothing is left.
//
// The package needs root. It must never touch a namespace, interface or
// process it did not create, and never sends a packet outside its own
// namespaces.
package netlab
