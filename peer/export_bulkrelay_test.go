package peer

// RelayedBulkForwards is how many forwards the daemon offered a bulk
// connection through its relay's splice.
func RelayedBulkForwards(d *Daemon) int64 { return d.bulk.relayed.Load() }
