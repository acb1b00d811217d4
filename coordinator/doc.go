// Package coordinator is the site's rendezvous and authority: it holds the
// site key, the technicians and their roles, jump groups, jump and session
// policies, site settings and installer keys, in Badger, and answers the
// control protocol (mesh.ControlProtocol) over libp2p.
//
// Layout: site.go (data directory: key, site.json, init), store.go (the
// only code that touches Badger), service.go (authentication and dispatch),
// one file per kind of record (users.go, groups.go, policies.go,
// installers.go, settings.go), access.go (who may see what), coordinator.go
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
//     would enroll hosts into something that no longer exists.
//   - Defaults the seeds do not give: lost horizon 30 days, statistics every
//     60 s, 20 concurrent upgrades at 10 MiB/s, installer keys valid 7 days,
//     invites 24 hours.
package coordinator
