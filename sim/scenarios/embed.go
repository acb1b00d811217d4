// Package scenarios holds the lab's shipped scenario files, embedded so that
// `jumpmesh sim run NAME` works from any directory.
package scenarios

import "embed"

// FS holds every shipped scenario as NAME.yaml.
//
//go:embed *.yaml
var FS embed.FS
