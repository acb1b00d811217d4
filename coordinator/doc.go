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
// (the daemon: host, HTTP /metrics and /healthz, lifecycle), wake.go
// (waking peers: wakers, the signed command, the cooldown, passive peers;
// its decisions are written there) and gateways.go (the same-gateway
// index the wakers come from, kept with the registry's records).
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
//
// # A grant's audit event before its answer
//
// A grant is answered only once the transaction that stores its audit
// event has committed (audit, jumps.go): on Badger after its sync, on etcd
// after the quorum's. So a grant whose event was lost to a crash, or
// refused by the store (audit_failed), never left the coordinator, and
// nothing on the peer's side has to know about the audit. Measured in
// session 28 (issue 17, docs/performance.md): of a jump's grant on a kept
// connection the checks and the signature take 0.12–0.19 ms and the audit
// write 1.0–2.9 ms (means, load 2–5), which is two device flushes: Badger
// syncs its value log at every commit even when the batch put nothing in
// it (every value here is under its 1 MB threshold and goes to the
// memtable's log), then the memtable's log. Decided:
//   - The order stays. Answering before the commit, with the peer holding
//     the session until it learns that the event is stored, needs that
//     news to come from the coordinator: a second signed note the console
//     forwards, or a message on the peer's control stream (on etcd
//     perhaps another coordinator's). That is a new message on two
//     protocols, with its attack tests, for at most the legs it would
//     overlap (coordinator to console to peer, and the peer's check:
//     0.3–0.6 ms quiet), about what the needless flush costs.
//   - The needless flush is Badger's: syncing the value log only when the
//     batch wrote to it (one line in its value.go) made a durable write
//     here 579 → 263 µs (BenchmarkStorePut, medians of 7 pairs at load
//     8), but only a fork of Badger gives it, and go.mod replaces nothing
//     (a replace makes `go install …@VERSION` refuse the module): left to
//     Badger upstream.
//
// TestGrantAnsweredOnlyAfterItsAuditCommits holds the commit and sees no
// answer until it is released; TestGrantNotIssuedWhenAuditFails closes the
// store under the service.
//
// # Session events, session starts and removed peers
//
// A peer reports session starts, ends and refusals; it may be patched, or
// enrolled by a technician for the purpose (issue #11 finding 7), so:
//
//   - An event is stored only for a grant this coordinator issued for the
//     reporting peer. Every grant's audit event is indexed by its nonce
//     (ag/<nonce>, written in the same transaction as the event), so this
//     holds across restarts and for sessions hours long; an unknown or
//     foreign nonce is refused and counted (SessionEventsDropped). Who
//     (user, technician) and which peer come from that grant, never from
//     the report; the capability used, detail, exit and byte counts are the
//     peer's account. A refusal is kept even without such a grant (a
//     forged or stolen grant is worth knowing about), but unless the
//     grant's own holder was refused it carries no user, and its
//     technician is only what the peer says: `audit --user` never shows a
//     user something a peer merely claims.
//   - Each free-text field is cut to 1 KiB (MaxEventField, marked
//     "…[truncated]"), identifiers to 64 bytes, and a peer's events pass a
//     token bucket of 100 then 5 a second (EventBurst, EventRate; wall
//     clock, kept across reconnects). At worst a peer adds ~11 KiB/s, all
//     attributed to the technicians whose grants it holds.
//   - audit replies are pages: the newest events before a cursor that fit
//     one control message (at most 1,000; 960 KiB; each text field cut to
//     4 KiB when served, for events stored before these bounds). The
//     console follows the cursor up to --limit (0: all).
//
// max-session-starts counts grants in flight (issued, not yet used at the
// peer). One technician may hold max-session-starts-per-technician of them,
// by default ("half") half of max-session-starts and at least one, so one
// technician cannot make the site "too busy" for the others (finding 8).
// An unused grant stops counting after StartSlot (10 s) rather than its
// 60 s lifetime: a console uses its grant within seconds, and a slot freed
// early only loosens the bound. A peer's report of the start (or refusal)
// frees it at once.
//
// rm of a peer leaves a tombstone (tp/<peer ID>) when its record goes, so
// every later hello from that identity is told to uninstall and is never
// welcomed or listed again (finding 11). It lasts until the key the peer
// holds is of no use and an honest peer has uninstalled itself: past both
// the end of its installer's validity (the installer record's, which is
// the latest of its keys) and the delete horizon counted from the
// removal; the sweep then drops it. A goodbye does not end it: a peer told
// to uninstall is not welcomed, so it cannot send one, and a patched
// peer's goodbye proves nothing. A peer uninstalled by its host (goodbye)
// before rm needs no tombstone.
//
// # Strangers and resource limits
//
// The coordinator faces the Internet, so every bound on what a caller makes
// it spend is finite and in one struct, Resources (resources.go; defaults in
// DefaultResources). The secure channel authenticates the remote's peer ID
// before any byte of a request is read, so the caller is sorted first
// (strangers.go): a member (an enrolled peer, or a key bound to a technician
// or relay) may send mesh.MaxControlMessage (1 MiB) per control request and
// mesh.MaxPeerMessage (256 KiB) per peer-protocol message; a stranger may
// send one first message of at most 4 KiB on the control protocol (it may
// only log in: a login is 44 bytes) or 16 KiB as a hello (the largest
// measured, an installer key with every field at its maximum plus the
// host's facts, is 3,343 bytes), within 10 s, at most 4 streams per
// identity and 256 strangers at once (more wait up to 10 s for a turn;
// members never wait). mesh.MsgReader checks a declared length against the
// caller's limit before allocating, grows its buffer as bytes arrive and
// charges bodies over 4 KiB to the stream's resource scope, so libp2p's
// resource manager bounds what members send too.
//
// libp2p's resource manager (finite where it bounds a caller, unlimited
// only for scopes that roll up into finite ones) and connection manager
// are sized for 20,000 online peers: 20,000 connections kept (22,564 at
// most; above 20,000 the connection manager closes the least useful down
// to 17,500, never an online peer's, which are protected), 2,048 in
// handshake, 64 inbound streams per identity, 2,048 control requests in
// flight, and a memory budget of 512 KiB per connection (libp2p counts
// yamux's 256 KiB receive window per stream whether filled or not;
// measured use is 81–118 KB per online peer, docs/performance.md). The
// per-address connection cap and libp2p's connection-rate limiter stay
// off: a site's hosts share office NATs, and connection-rate paces them
// after their hello. A stranger with many identities can still keep other
// strangers (new enrollments and logins) waiting; it cannot touch members.
// TestStrangerCannotExhaustMemory, TestStrangerHelloIsSmall and
// TestMembersGetTheFullLimit perform the attacks (issue #11 finding 4).
//
// A hello from a host that is not enrolled is charged to connection-rate
// only after its installer key parsed and its signature, site and window
// checked (45 µs): hellos without a valid key are refused with the key's
// error and cannot use up the rate real peers need
// (TestGarbageHellosDoNotUseTheRate, issue #11 finding 12). Holders of a
// valid key can still spend the rate, as they can enroll.
//
// # Storms
//
// Decided for issue #16, where the seeds give only connection-rate:
//
//   - Inbound TCP handshakes pass a gate (handshakes.go) whose bound
//     follows their latency, so a storm is served at the rate the machine
//     can and the connections past the bound wait in the kernel's accept
//     queue instead of timing out half-done; peers dial their coordinator
//     patiently (mesh.HostConfig.PatientDials). connection-rate stays an
//     upper bound, applied after the hello: there is no cheap way to say
//     "retry at T" before a TLS handshake, and the queue makes one
//     unnecessary.
//   - A peer told to retry holds a booked turn (enroll.go, admission
//     tickets): it comes back once, not every second.
//   - Peers treat a refused connection soon after a session as a restart
//     and keep retrying within two seconds for two minutes
//     (peer.ReconnectAttempt).
//
// # Pushing to online peers
//
// What the coordinator tells an online peer after its welcome — new
// settings (settings set, peer set, a relay that appears), revocations,
// the order to uninstall — goes through one mechanism, the peer session's
// send queue (push.go); nothing writes to a peer on the caller's
// goroutine (issue #12 finding 4). Pushing appends to the queue: settings
// set answers at once with how many online peers it told (peers_told), and
// the writes happen after. A pool of writers (Resources.PeerWriters, 32)
// empties the queues, one writer per session at a time so that a peer's
// messages keep their order; a write that a peer holds up past 250 ms
// gives its writer's place away, so peers that do not read delay no one.
// A settings update is queued as a marker and built when written: a peer
// that falls behind gets the latest settings once, not every change.
//
// A peer that does not read is disconnected, not skipped: when its queue
// holds Resources.PeerSendQueue (64) messages, or one message waits
// Resources.PeerWriteTimeout (10 s). Dropping messages would leave it
// online with settings it was never sent or a revocation it never saw;
// disconnected, it reconnects and its welcome carries every current
// setting, and a missed revocation's grants open channels for at most
// grant.Limits.OpenFor, as for any peer offline at the time. Close waits
// for the writers after closing the host (which resets their streams).
//
// Measured (BenchmarkSettingsSet in sim/scale, fleet peers in the same
// process, 2 shared cores): the coordinator's settings set took 6 ms /
// 80 ms / 305 ms with 100 / 1,000 / 4,000 online peers when it wrote to
// each in turn, about 75 µs a peer, so some 1.5 s at 20,000 plus 10 s for
// every peer that does not read; with the queues it takes 2 / 10 / 12 ms,
// and the update is written to every peer 6 / 82 / 310–460 ms after
// (unchanged: the same writes, now after the answer). The tests with a
// patched peer that stops reading: TestStuckPeerHoldsUpNoOne,
// TestStuckPeerIsDisconnectedWhenItsQueueIsFull, TestCloseWaitsForPushes.
//
// # Peer records: one writer for Badger and the cache
//
// Peer records live twice: in Badger (p/, and tp/ for tombstones) and in
// the in-memory registry that searches and sessions read. peerStore
// (peerstore.go) is the only writer of both (issue #12 finding 3): a
// change is a store transaction without side effects, since Store.Update
// runs it again after a write conflict, and the registry takes the
// committed record only once Update returned nil. A change that never
// commits (conflicts past the retry bound, a full disk) leaves the cache as
// the store is. Writes of one peer hold a lock (64 stripes by peer ID) over
// the transaction and the cache update, so two committed changes of a
// peer reach the cache in commit order; different peers still write in
// parallel. What stays in memory only — the session, the last contact
// between flushes, the latest statistics — is not a record and is not
// compared. TestPeerGoneCacheMatchesStoreAfterConflicts makes real Badger
// conflicts (Store.beforeCommit, set by tests only) and compares every
// cached record with its stored one.
//
// # Several coordinators on one etcd: members and the store's watch
//
// Every coordinator process of a site is a member under an instance name
// (StoreConfig.Instance, `coordinator run --instance`, the host name by
// default). On etcd a member keeps c/<instance> (a JSON memberRecord: its
// addresses, start, version, process) under a lease of its own (10 s TTL,
// kept alive); every commit is fenced on that key, so a coordinator whose
// lease ran out writes nothing until it registered again
// (store_etcd_lease.go). A second process of a live instance is refused
// (store_in_use). On Badger the coordinator is the only member. What the
// rest of the service uses (members.go, store.go):
//
//   - Service.members(): the live members, this one first, then by name;
//   - Service.memberAddrs(): every address the site's coordinators serve
//     at, this one's first, each once, without /p2p/ (all of them have the
//     site's peer ID); jumpoints.go's siteAddrs is another thing (own
//     addresses with /p2p/ and the relays');
//   - Service.onMembersChanged(fn): fn runs after a member joins, leaves
//     or its lease ends;
//   - Tx.revision() and Store.watch(prefix, after, fn): read what you
//     follow in a View, take its revision, and watch from there: fn gets
//     every later change under prefix in commit order (watchBatch of
//     storeEvents; a nil value is a delete, a lease's end included; reset
//     means "the prefix afresh" after the watch fell behind etcd's
//     compaction), on one goroutine per watch, until the store closes. Own
//     writes come back too: applying must be idempotent. On Badger fn is
//     never called;
//   - Tx.kv.setLeased(key, value): a write that lasts while this member
//     does (presence).
//
// Presence (presence.go): the coordinator holding a peer's session keeps
// o/<peer id> under its lease, and every coordinator's registry follows p/
// and o/ by watch, so a peer is online site-wide and a jump asked of any
// coordinator gets the holder's view of the peer's addresses and IP. The
// registry's snapshot says online (anywhere) and held (a session here):
// what writes for a peer or pushes to it looks at held, or at
// peers.session(id). PeerCounts' online is site-wide.
//
// # One audit log across coordinators
//
// Several coordinators of a site (etcd) append to one audit log at once.
// An event's key is a/<time><instance>\x00<sequence> (audit.go): the time
// the writing coordinator gave the event, its instance name, its own
// counter. Keys are unique without coordination (no two instances share a
// name; the store refuses a second process of a live instance), appends
// never conflict with each other (each creates its own key, nothing is
// read), and the log's one order, the one every reader on every
// coordinator sees, is key order: time, then instance, then sequence.
//
// Commit order was the other choice: a counter key read and incremented by
// every append. It would make every append of the site conflict with every
// other (each retry a round trip to etcd, and a grant whose event loses
// eight times is refused, audit_failed), for an order that `audit --since`
// cannot seek by anyway. Time order has these caveats, stated for readers
// of the log:
//
//   - Events of different coordinators are ordered by their clocks: run
//     NTP; two events of two coordinators closer than the clocks' skew may
//     be listed in either order.
//   - An event is stored a little after its time was taken (the commit, up
//     to a few retries: milliseconds; the store's request timeout, 10 s,
//     at worst), so it may land behind events already stored. Paging is by
//     cursor (the key of the oldest event of the last page), so pages never
//     repeat or skip what was stored when they were read, whatever others
//     append; a reader paging back from the newest may miss an event
//     stored meanwhile behind its cursor, and sees it when it reads again.
//     TestAuditOneOrderAcrossCoordinators makes both happen.
package coordinator
