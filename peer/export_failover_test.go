package peer

import lpeer "github.com/libp2p/go-libp2p/core/peer"

// LearnSiteAddrs is what the daemon does with a welcome's site_addrs.
func LearnSiteAddrs(d *Daemon, raw [][]byte) { d.learnSiteAddrs(raw) }

// CoordinatorOf is the site's ID and every address the daemon dials it at.
func CoordinatorOf(d *Daemon) lpeer.AddrInfo { return d.coordinator() }
