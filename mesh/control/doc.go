// Package control is the control protocol: every request a party makes of
// the coordinator.
//
// # Control protocol (/jumpmesh/control/1.0.0)
//
// Both ends are libp2p hosts; the secure channel (Noise or TLS)
// authenticates each side's peer ID, and that peer ID is the caller's
// identity: there are no passwords or tokens on the wire.
//
//  1. The caller opens a new stream to the coordinator with protocol ID
//     Protocol.
//  2. It writes one pb.Request, framed as an unsigned-varint length followed
//     by the protobuf bytes (the go-libp2p pbio convention), at most
//     MaxMessage bytes, and closes its write side.
//  3. The coordinator maps the remote peer ID to a technician (or, for a
//     login request, redeems the invite code carried in it and binds the
//     remote peer ID to the invited user), checks the caller's role, and
//     executes the request. Writes are synced to disk before step 4.
//  4. It writes one pb.Response, framed the same way, and closes the
//     stream. A failed request carries pb.Error{code, message, detail}
//     where code is a catalog Code; a successful one carries a body.
//  5. Either side resets the stream on a framing error or after Timeout;
//     the caller reports catalog.CodeCoordinatorDown.
//
// One stream per request keeps requests independent: a slow one never
// blocks another, and the coordinator holds no per-connection state.
// A Gate decides, before any byte is read, what a caller may send:
// members get the full limits, strangers small ones.
//
// Call runs on a libp2p host's connection. DialDirect makes the same kind
// of connection without a host (TCP, libp2p's TLS, yamux: Conn), for a
// command that makes a call or two and exits (`jumpmesh ls`), to which
// building and closing a host cost more than its call; the coordinator
// cannot tell the two apart. Both read a reply that is a peer list with a
// decoder of their own (peerlist.go) and every other with protobuf's.
package control
