package netlab

import "syscall"

// SetPdeathsigForTest lets a helper process leave its children behind on
// purpose, to test Clean. It returns a function restoring the default.
func SetPdeathsigForTest(sig syscall.Signal) (restore func()) {
	old := pdeathsig
	pdeathsig = sig
	return func() { pdeathsig = old }
}

// CheckPrefixForTest exposes the prefix guard of Clean.
var CheckPrefixForTest = checkPrefix
