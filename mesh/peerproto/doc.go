// Package peerproto holds what both ends of the peer protocol
// (/jumpmesh/peer/1.0.0, a peer's persistent stream to its coordinator)
// share: its ID, its message bound, and the exec rule the coordinator
// applies when it issues a grant and the peer applies on every channel.
// The message flow is written in the peer package's doc.go.
package peerproto
