package console

import "time"

// BulkForwards counts the forwards this process carried on bulk
// connections.
func BulkForwards() int64 { return bulkForwards.Load() }

// SetAgentQuietTimeout sets how long AgentExec waits between the agent's
// frames after the request, until restore.
func SetAgentQuietTimeout(d time.Duration) (restore func()) {
	old := agentQuietTimeout
	agentQuietTimeout = d
	return func() { agentQuietTimeout = old }
}
