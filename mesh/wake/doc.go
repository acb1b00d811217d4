// Package wake is Wake-on-LAN and the wake command of passive peers: what
// the coordinator signs, what a waker sends on its LAN, and what a passive
// peer accepts on its passive port.
//
// # Message flow (/jumpmesh/wake/1.0.0)
//
//  1. A technician asks the coordinator to wake a peer (control request
//     wake, or jump --wake). The coordinator picks the wakers: up to two
//     online peers behind the target's gateway (same gateway IP and MAC,
//     the most recently seen first) and the online jumpoints the target
//     talks through.
//  2. It signs a WakeCommand (pb.WakeBody: site, target, a 16-byte nonce,
//     an expiry at most MaxValidity away, the target's MACs and SecureOn
//     password, its gateway and private IPs, and for a passive target the
//     IP:port pairs of its passive port) with the site key over
//     "jumpmesh wake v1\n" + body, so no other signed object of the site
//     passes as one.
//  3. For each waker it opens a stream of this protocol on the connection
//     the waker already holds, writes WakeOrder{command} and reads one
//     WakeReport. A waker serves the protocol only for the site it pinned,
//     verifies the command, and then sends: for each MAC, the magic packet
//     (6×0xFF, 16× the MAC, the password if any) as a UDP broadcast to ports
//     9 and 7 on its interface toward the target's gateway (a jumpoint: toward
//     the target's private IPs), and as an Ethernet frame of EtherType 0x0842
//     where it may open a raw socket; for each passive address, the encoded
//     command over UDP and TCP. It reports one line per send.
//  4. A passive peer listens on its passive port (TCP and UDP). It accepts
//     a command only if it is Magic + a WakeCommand of at most MaxCommand
//     bytes, signed by its pinned site, for its own peer ID, not expired,
//     and with a nonce it has not accepted before; then it connects to the
//     coordinator. Everything else is dropped, counted, and costs at most
//     one signature check per accepted rate token: the size, the Magic,
//     the parse, the body's site, target, expiry and nonce are checked
//     first, the signature last (ListenPassive, PassiveStats). A wake
//     reaches a passive peer several times (UDP and TCP, from the
//     coordinator and each waker): copies within seconds of the first are
//     counted as duplicates, later ones as replays.
//
// The coordinator keeps the per-target cooldown (30 s, site-wide, in its
// store) and the audit; wakers and passive peers keep nothing but the
// replay cache.
package wake
