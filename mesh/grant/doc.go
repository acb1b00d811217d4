// Package grant signs and verifies jump grants: the coordinator's signed
// permission for one technician (by console peer ID) to open sessions with
// a set of capabilities on one peer, and the peer's Gate that admits each
// channel with one.
//
// The signature covers "jumpmesh jump grant v1\n" + body, so no other
// signed object of the site (an installer key) can pass as a grant. A peer
// checks a grant against the site key it pinned at install (a site's peer
// ID embeds its Ed25519 key). Pure: no network, no files.
//
// # A grant's life
//
//  1. A console asks the coordinator to jump. The coordinator checks the
//     technician, the peer's visibility, status, jump window and session
//     policies, and signs a body naming the site, the technician, the peer,
//     the capabilities (for a user present and not present), a random
//     nonce, issued_unix and expires_unix (at most MaxLifetime later).
//  2. The console opens a channel on the peer with the grant in its
//     ChannelOpen. The peer calls Gate.Admit: signature and site; the grant
//     names this peer and the remote the secure channel authenticated; not
//     withdrawn by a revocation; and then either its first use — it must
//     not have expired, and it becomes bound to this connection — or a later
//     use on a connection it is bound to (or a new connection of the same
//     technician while a bound one is open), within Limits.OpenFor of the
//     first use. Anything else is a replay (grant_invalid), past the bound
//     (grant_expired) or withdrawn (grant_revoked).
//  3. The peer picks the capabilities by whether a user is logged in and
//     checks the channel's kind against them.
//  4. When the bound passes, the peer refuses the grant's new channels with
//     grant_expired; the console asks the coordinator for a fresh grant
//     (console.Forwarder does it without the user noticing), and the
//     coordinator's checks run again. Channels already open go on.
//  5. When the coordinator learns that earlier grants no longer hold (a
//     user removed, a peer's policies or group changed, a session policy's
//     rules changed, a jump window closed) it sends the peers concerned a
//     revocation over their peer stream: technicians (or all) and a moment
//     on its own clock. The peer calls Gate.Revoke, which refuses those
//     grants from then on (grant_revoked), also ones it has not seen yet,
//     and closes the channels they opened (Revocation.Covers). The
//     coordinator stamps every grant it issues after a revocation later
//     than that revocation, so neither clock resolution nor the peer's
//     clock can make a fresh grant look withdrawn or an old one look fresh.
//
// The body also carries console_ip: the technician's public IP as the
// coordinator saw it on the connection that asked for the grant (empty
// through a relay circuit). Gate.ConsoleIP hands it, while a grant of that
// technician can still open channels, to the peer's puncher: the only
// address port-mapping probing (mesh/probe) may aim at, so a console cannot
// point a peer's packets at a third party.
//
// Revocation reaches only peers online at the coordinator; a peer cut off
// from it misses the revocation, and Limits.OpenFor bounds what that costs.
package grant
