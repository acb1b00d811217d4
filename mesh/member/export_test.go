package member

// Learn is learn, for the attack test of the coordinator list.
func (c *Client) Learn(raw [][]byte) bool { return c.learn(raw) }

// DropLane is dropLane, as a call cut on the lane does it.
func (c *Client) DropLane() bool { return c.dropLane() }
