package relay

import (
	"context"
	"time"
)

// ACLFetchedAt is when the relay last fetched its ACL.
func ACLFetchedAt(r *Relay) time.Time { return time.Unix(0, r.aclAt.Load()) }

// Refresh fetches the relay's ACL now.
func Refresh(ctx context.Context, r *Relay) error { return r.refresh(ctx) }

// KeptRelays are the relays the relay's config file in dir keeps.
func KeptRelays(dir string) ([]string, error) {
	cfg, err := files(dir).LoadConfig()
	if err != nil {
		return nil, err
	}
	return cfg.Relays, nil
}
