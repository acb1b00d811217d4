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
package coordinator
