// Package mesh is what every jumpmesh party shares: libp2p host
// construction, identities and signing, protocol IDs and the control
// protocol's framing, the wire messages (mesh/pb), the error catalog, the
// clock, schedules, and the CLI words for enum values.
//
// It must stay small and must not depend on any party (coordinator, peer,
// relay, jumpoint, console); they depend on it.
//
// # Control protocol (/jumpmesh/control/1.0.0)
//
// The control protocol carries every request a party makes of the
// coordinator. Both ends are libp2p hosts; the secure channel (Noise or
// TLS) authenticates each side's peer ID, and that peer ID is the caller's
// identity: there are no passwords or tokens on the wire.
//
//  1. The caller opens a new stream to the coordinator with protocol ID
//     ControlProtocol.
//  2. It writes one pb.Request, framed as an unsigned-varint length followed
//     by the protobuf bytes (the go-libp2p pbio convention), at most
//     MaxControlMessage bytes, and closes its write side.
//  3. The coordinator maps the remote peer ID to a technician (or, for a
//     login request, redeems the invite code carried in it and binds the
//     remote peer ID to the invited user), checks the caller's role, and
//     executes the request. Writes are synced to disk before step 4.
//  4. It writes one pb.Response, framed the same way, and closes the
//     stream. A failed request carries pb.Error{code, message, detail}
//     where code is a catalog Code; a successful one carries a body.
//  5. Either side resets the stream on a framing error or after
//     ControlTimeout; the caller reports CodeCoordinatorDown.
//
// One stream per request keeps requests independent: a slow one never
// blocks another, and the coordinator holds no per-connection state.
//
// # Error catalog
//
// catalog.go is the one table of user-facing errors: stable snake_case
// codes with the English message of the seeds' error appendix, reworded in
// our vocabulary (Jump Client → peer, support session → session), plus
// jumpmesh's own. Coordinator replies carry codes; the CLI prints the
// message, and the code too with --json.
package mesh
