package wake

// SetBindToDevice turns SO_BINDTODEVICE off (false) so a test sends the
// way a peer without it does (IP_PKTINFO); it returns the old setting.
func SetBindToDevice(on bool) bool { return bindToDevice.Swap(on) }
