// Package mesh is what every jumpmesh party shares at the bottom: libp2p
// host construction (NewHost, the lab's public ranges), identities (key
// files, signing), address helpers, atomic file writes and the clock.
//
// It must stay small and must not depend on any party (coordinator, peer,
// relay, jumpoint, console); they depend on it. Everything else shared
// lives in one subpackage per protocol or concern, as go-libp2p keeps one
// package per protocol:
//
//   - mesh/pb: the wire messages.
//   - mesh/catalog: the error catalog (codes, messages, wire form).
//   - mesh/frame: length-delimited protobuf framing with memory accounting.
//   - mesh/control: the control protocol (/jumpmesh/control/1.0.0).
//   - mesh/peerproto: the peer protocol's ID and the exec rule both ends apply.
//   - mesh/punch: the peer's hole-punch initiator.
//   - mesh/natmap: a NAT's mapping behaviour from observed ports, and
//     the next port of a sequential one (with the packet budget).
//   - mesh/channel: session channels; mesh/grant: jump grants;
//     mesh/dht: the private DHT; mesh/member: the member client every
//     enrolled party uses; mesh/words: the CLI's words for enum values.
//
// Jump- and session-policy schedules belong to the coordinator, the only
// party that evaluates them (coordinator/schedule.go).
package mesh
