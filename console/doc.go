// Package console is the technician's side of jumpmesh: the library the CLI
// uses to log in to a site and to talk to its coordinator. It keeps the
// technician's key and the site's address in the console home
// (JUMPMESH_HOME, or <user config dir>/jumpmesh) and authenticates every
// request with that key through the secure channel (TLS 1.3 or Noise); the coordinator decides
// what the key's user may do.
//
// It must not import the coordinator: everything crosses the wire.
package console
