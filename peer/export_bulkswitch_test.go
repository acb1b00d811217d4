package peer

import (
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
)

// BulkSwitches is how many exec channels the daemon offered a switch to
// a bulk connection through its relay's splice, and how many switched.
func BulkSwitches(d *Daemon) (offered, switched int64) {
	return d.bulk.switches.Load(), d.bulk.switched.Load()
}

// SetSpliceSlotHook makes f see each splice slot the daemon connects to.
func SetSpliceSlotHook(d *Daemon, f func(addr string, slot channel.SpliceSlot)) {
	d.bulk.slotHook.Store(&f)
}

// DropBulkSwitch makes the daemon a peer of session protocol 1.1.0: it
// no longer serves channel.ProtocolBulkSwitch.
func DropBulkSwitch(d *Daemon) { d.host.RemoveStreamHandler(channel.ProtocolBulkSwitch) }

// SpliceSlotAsks is how many exec and file channels the daemon asked its
// relay for a splice slot for.
func SpliceSlotAsks(d *Daemon) int64 { return d.bulk.slotAsks.Load() }

// SetBulkSwitchAfter makes the daemon offer a switch to a channel that
// carried little only once it has run for after.
func SetBulkSwitchAfter(d *Daemon, after time.Duration) { d.bulk.switchAfter.Store(int64(after)) }
