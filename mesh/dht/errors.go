package dht

import "errors"

var (
	// ErrNoServers means no DHT server of the site could be reached (or
	// none answered a FIND_NODE) before the lookup's deadline.
	ErrNoServers = errors.New("no DHT server of the site answered")
	// ErrNotFound means the servers asked know no address of the peer.
	ErrNotFound = errors.New("the site DHT does not know the peer")
)
