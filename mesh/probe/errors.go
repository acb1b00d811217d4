package probe

import "errors"

// Errors of an exchange (wrapped with what happened).
var (
	// ErrRefused: the console refused to probe (the reason follows).
	ErrRefused = errors.New("the console refused to probe")
	// ErrNoHit: no probe met an opener within the budget.
	ErrNoHit = errors.New("no probe met an opener")
	// ErrRemoteFailed: the other side gave up (its reason follows).
	ErrRemoteFailed = errors.New("the other side gave up probing")
	// ErrNotAllowed: the address the other side named is not the one
	// this side may send to.
	ErrNotAllowed = errors.New("address not allowed for probing")
	// ErrGrant: the console's answer carried no grant that verifies
	// (Local.CheckGrant's error follows).
	ErrGrant = errors.New("the console's grant does not allow probing")
	// ErrProtocol: the other side broke the exchange's message order.
	ErrProtocol = errors.New("probe exchange out of order")
)

// Reasons a console refuses (ProbeAnswer.refused): clear sentences, as
// the catalog's messages are.
const (
	refuseInbound  = "A console probes only towards a peer it connected to itself; this connection was opened by the peer."
	refuseBadOffer = "The probe offer is malformed (its key must be 16 bytes)."
)
