package scale

// FleetPIDs are the engine's fleet processes' PIDs (none in this process).
func FleetPIDs(e *Engine) []int {
	f, ok := e.fleet.(*procFleet)
	if !ok {
		return nil
	}
	var pids []int
	for _, c := range f.children {
		pids = append(pids, c.cmd.Process.Pid)
	}
	return pids
}
