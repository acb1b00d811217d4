// Package coordinator is the site's rendezvous and authority: it holds the
// site key, the technicians and their roles, jump groups, jump and session
// policies, site settings and installer keys, in Badger, and answers the
// control protocol (mesh.ControlProtocol) over libp2p.
//
// Layout: site.go (data directory: key, site.json, init), store.go (the
// only code that touches Badger), service.go (authentication and dispatch),
// one file per kind of record (users.go, groups.go, policies.go,
// installers.go, settings.go), access.go (who may see what), admin.go
// (every administrative change: its audit event, the hook after it), coordinator.go
// (the daemon: host, HTTP /metrics and /healthz, lifecycle).
//
// Session traffic never passes through the coordinator; it must not grow a
// data path. Every acknowledged write is synced to disk before the reply.
//
// # Decisions where the seeds are silent
//
//   - Invites: a one-time code of 120 random bits, stored only as a hash.
//     Inviting an existing user adds a device (another console key) with the
//     same role; roles change only with `user role`, never through an invite.
//     The site always keeps one administrator (last_admin).
//   - Technicians (non-admins) may read policies and settings, see the jump
//     groups they belong to, and create installers for their own personal
//     list or a shared group they are a member of; they list, extend and
//     delete only the installers they created. Everything else is for admins.
//   - Deleting an installer revokes it: the record stays as a tombstone so
//     its key is refused as revoked (not unknown) and `installer list --all`
//     still shows who deleted it and when.
//   - Extending re-signs the key with an end of valid-for from now (bounds
//     as at creation). The old key string keeps its own, earlier, end.
//   - A jump policy, session policy or shared group that a live installer
//     names cannot be deleted (in_use, naming the installers): deleting it
//     would enroll hosts into something that no longer exists. A jump or
//     session policy that any enrolled peer names cannot be deleted either
//     (in_use, saying how many peers and installers, and which).
//   - A peer's policies (jump policy, session policy present and not
//     present) are administrators' alone: a technician who may see and set
//     a peer may change its name, tag, comments and (within the groups they
//     may use) its group, never its policies (permission_denied). No role
//     can be granted this: a technician able to set policies could lift
//     any restriction an administrator put on the peers they see, which is
//     what a policy exists to prevent. Installers a technician creates may
//     still name policies: those choose how a host the technician installs
//     starts out, not a change to a peer someone else restricted.
//   - Policies fail closed. No policy named means no restriction, but a
//     policy named and missing (deleted in a race with a set, or lost from
//     the store) denies every jump to the peer with policy_missing, at
//     grant issue, until an administrator sets the peer's policies again.
//   - The audit log fails closed for grants: a grant whose audit event
//     could not be stored is not issued (audit_failed). Every
//     administrative change (users, roles, invites, groups, policies,
//     settings, installers created, extended or deleted, peer set and rm;
//     relays are users of role relay) is an audit event of kind "admin"
//     with who, the action, what it changed and before → after where that
//     is cheap (admin.go, `jumpmesh audit --kind admin`). It is written
//     just after the change commits; if that write fails the change stands
//     and the failure is logged at error level (an administrator's change
//     cannot be un-made once acknowledged to others, and a store that
//     refuses the event refuses grants too).
//   - Defaults the seeds do not give: lost horizon 30 days, statistics every
//     60 s, 20 concurrent upgrades at 10 MiB/s, installer keys valid 7 days,
//     invites 24 hours.
package coordinator
