// Package console is the technician's side of jumpmesh: the library the CLI
// uses to log in to a site and to talk to its coordinator. It keeps the
// technician's key and the site's address in the console home
// (JUMPMESH_HOME, or <user config dir>/jumpmesh) and authenticates every
// request with that key through the secure channel (TLS 1.3 or Noise); the coordinator decides
// what the key's user may do.
//
// Sessions have one shape (Client.WithJump): ask the coordinator for a
// grant (Need), use it (Jump.Exec, Jump.Copy, a Forwarder), and report how
// the session connected (Jump.ReportPath, once per grant). The CLI only
// parses flags, wires the terminal and OS signals, and prints: the path a
// session takes is a typed Path, read from the connection's address, whose
// String is the text `jump -v`, forward and ping print and the lab reads;
// Ping returns the rounds and the path summary for the CLI to print.
// PathJumpoint is declared for jumpoints (issue 10) but not yet yielded: a
// jumpoint's circuit looks like a relay's until the console knows the
// site's jumpoints.
//
// It must not import the coordinator: everything crosses the wire.
package console
