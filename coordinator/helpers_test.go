package coordinator_test

import (
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

func peerIDString(b []byte) string { return peer.ID(b).String() }

func upperNoDashes(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "")) }
