package mesh

import (
	"encoding/json"
	"fmt"
	"os"
)

// ReadJSONFile decodes the JSON file at path into v. A missing file's error
// wraps fs.ErrNotExist, for the caller to say what that means to it (not
// logged in, no site here); every error names the file. Unknown fields are
// ignored, so a file written by a newer jumpmesh still reads after a
// downgrade; each party validates what it read.
func ReadJSONFile(path string, v any) error {
	raw, err := os.ReadFile(path) // its error names path
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// WriteJSONFile replaces path with v as indented JSON ending in a newline,
// atomically (WriteFileAtomic).
func WriteJSONFile(path string, v any, mode os.FileMode) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(raw, '\n'), mode)
}
