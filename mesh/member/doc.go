// Package member is what every site member needs to talk to its
// coordinator: its identity on disk, invite login, and control calls. The
// console, the relay and (next) the jumpoint are members; each keeps what is
// its own (a technician's jumps and channels, a relay's ACL and circuits)
// in its own package and builds on this one, so no party imports another.
//
// # On disk
//
// A member keeps two files in one directory, under names its party picks
// (Files): the console uses technician.key and console.json, the relay
// relay.key and relay.json.
//
//   - The key file holds the member's Ed25519 private key, which is its
//     libp2p identity and therefore who it is to the coordinator. It is
//     created with mode 0600 and refused if other users may read it (the
//     key-file code of package mesh, shared with peers and the
//     coordinator).
//   - The config file (JSON, Config) records which site the member is
//     enrolled in: the site's peer ID, the coordinator's addresses, and the
//     user and role the invite was for. It is replaced atomically.
//
// # Enrollment, step by step
//
//  1. An administrator invites a user (`jumpmesh invite`, `jumpmesh relay
//     invite`), which gives a one-time code.
//  2. Login makes the member's key (or reuses the one in the directory),
//     starts a libp2p host with it and sends a LoginRequest carrying the
//     code over the control protocol. The coordinator binds the
//     Noise-authenticated peer ID to the invited user.
//  3. Only then is the config file written; a failed login leaves the key
//     alone and writes no config, so the member stays "not logged in".
//  4. Later, Open reads both files and starts the host again; Call sends
//     one control request, connecting to the coordinator first if needed.
//
// Daemons (relays, jumpoints) enroll and serve from one host:
// Daemon.Serve logs in on the first run and returns the member client on
// the host the daemon serves from, so every party's calls to the
// coordinator take the same path: the members' lane first (lane.go),
// every coordinator address and relay the answers carry kept
// (coordinators.go), and the site's relays asked where the site is when
// no address answers (findsite.go; a relay, which keeps no relay list,
// names the servers of its DHT routing table with FindSiteAlso).
//
// A member renamed its files (the relay's were technician.key and
// console.json before it had its own names): Migrate renames each old file
// to its new name when only the old one exists, so a directory made by an
// older release keeps its identity.
//
// It must not import any party (coordinator, peer, relay, jumpoint,
// console): they import it.
package member
