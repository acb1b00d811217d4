package console

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/jumpmesh/jumpmesh/mesh/member"
)

// HomeEnv overrides where the console keeps its key and configuration.
const HomeEnv = "JUMPMESH_HOME"

// The console home is a member directory (mesh/member) with these two
// files: the technician's key (mode 0600) and the site it is logged in to.
const (
	KeyFile    = "technician.key"
	ConfigFile = "console.json"
)

// files are the member files of the console home.
func files(home string) member.Files {
	return member.Files{Dir: home, Key: KeyFile, Config: ConfigFile}
}

// DefaultHome is $JUMPMESH_HOME, or <user config dir>/jumpmesh.
func DefaultHome() (string, error) {
	if h := os.Getenv(HomeEnv); h != "" {
		return h, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the console home (set %s): %w", HomeEnv, err)
	}
	return filepath.Join(dir, "jumpmesh"), nil
}
