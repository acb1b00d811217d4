package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// HomeEnv overrides where the console keeps its key and configuration.
const HomeEnv = "JUMPMESH_HOME"

const (
	keyFile    = "technician.key"
	configFile = "console.json"
)

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

// Config is console.json: which site this console is logged in to.
type Config struct {
	Site string `json:"site"`
	// Coordinator are the coordinator's multiaddrs, each ending in /p2p/<site>.
	Coordinator []string `json:"coordinator"`
	User        string   `json:"user"`
}

func loadConfig(home string) (*Config, error) {
	raw, err := os.ReadFile(filepath.Join(home, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, mesh.Errorf(mesh.CodeNotLoggedIn, "(no %s in %s)", configFile, home)
	}
	if err != nil {
		return nil, fmt.Errorf("reading console config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("reading console config %s: %w", filepath.Join(home, configFile), err)
	}
	return &c, nil
}

// saveConfig replaces console.json atomically.
func saveConfig(home string, c *Config) error {
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return mesh.WriteFileAtomic(filepath.Join(home, configFile), append(raw, '\n'), 0o600)
}
