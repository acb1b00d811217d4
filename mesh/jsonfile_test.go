package mesh

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJSONFileRoundTrip: what WriteJSONFile writes (0600, indented, a final
// newline) ReadJSONFile reads back; a missing file is fs.ErrNotExist, a
// broken one names its path, and fields the reader does not know are
// ignored (a file from a newer jumpmesh).
func TestJSONFileRoundTrip(t *testing.T) {
	type conf struct {
		Site  string   `json:"site"`
		Addrs []string `json:"addrs"`
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "x.json")
	if err := WriteJSONFile(path, conf{Site: "s", Addrs: []string{"a"}}, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if want := "{\n  \"site\": \"s\",\n  \"addrs\": [\n    \"a\"\n  ]\n}\n"; string(raw) != want {
		t.Errorf("file = %q, want %q", raw, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode: %v %v", st.Mode(), err)
	}
	var got conf
	if err := ReadJSONFile(path, &got); err != nil || got.Site != "s" || len(got.Addrs) != 1 {
		t.Fatalf("read back %+v, %v", got, err)
	}

	missing := filepath.Join(dir, "missing.json")
	if err := ReadJSONFile(missing, &got); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte(`{"site": "s",`), 0o600)
	if err := ReadJSONFile(path, &got); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("broken file: %v", err)
	}
	os.WriteFile(path, []byte(`{"site": "t", "added_later": 1}`), 0o600)
	if err := ReadJSONFile(path, &got); err != nil || got.Site != "t" {
		t.Errorf("unknown field: %+v, %v", got, err)
	}
	if err := WriteJSONFile(path, func() {}, 0o600); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("unencodable value: %v", err)
	}
}
