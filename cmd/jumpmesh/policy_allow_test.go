package main

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestAllowTakesCpForFileTransfer: the technician's command is cp, the
// capability file-transfer; --allow takes either word.
func TestAllowTakesCpForFileTransfer(t *testing.T) {
	for _, words := range [][]string{{"cp"}, {"shell,cp"}, {"file-transfer"}, {"shell", "CP"}} {
		p := new(pb.SessionPolicy)
		if err := applyAllow(p, words); err != nil || !p.GetFileTransfer() || p.GetForward() {
			t.Errorf("--allow %q: %v, policy %v", words, err, p)
		}
	}
	p := new(pb.SessionPolicy)
	if err := applyAllow(p, []string{"scp"}); err == nil {
		t.Errorf("--allow scp accepted: %v", p)
	}
}
