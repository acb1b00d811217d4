package mesh_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"github.com/jumpmesh/jumpmesh/mesh"
)

func TestCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.key")
	priv, err := mesh.CreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if priv.Type() != crypto.Ed25519 {
		t.Errorf("key type %v, want Ed25519", priv.Type())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != mesh.KeyFileMode || mesh.KeyFileMode != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}

	loaded, err := mesh.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Equals(priv) {
		t.Error("loaded key differs from the created one")
	}
	idCreated, _ := peer.IDFromPrivateKey(priv)
	idLoaded, _ := peer.IDFromPrivateKey(loaded)
	if idCreated != idLoaded || idCreated == "" {
		t.Errorf("peer IDs differ: %s, %s", idCreated, idLoaded)
	}
}

func TestCreateKeyFileMakesDistinctKeys(t *testing.T) {
	dir := t.TempDir()
	a, err := mesh.CreateKeyFile(filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := mesh.CreateKeyFile(filepath.Join(dir, "b.key"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Equals(b) {
		t.Error("two created keys are equal")
	}
}

func TestCreateKeyFileRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.key")
	orig, err := mesh.CreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mesh.CreateKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateKeyFile: got %v, want fs.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("refusing to overwrite still changed the file")
	}
	loaded, err := mesh.LoadKeyFile(path)
	if err != nil || !loaded.Equals(orig) {
		t.Fatalf("the original key is gone: %v", err)
	}

	// Any existing file counts, not only key files.
	other := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(other, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mesh.CreateKeyFile(other); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreateKeyFile over a file: got %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(other); string(got) != "keep me" {
		t.Fatalf("file overwritten: %q", got)
	}
}

func TestCreateKeyFileMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	if _, err := mesh.CreateKeyFile(filepath.Join(dir, "site.key")); err == nil {
		t.Fatal("CreateKeyFile in a missing directory succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CreateKeyFile created the directory: %v", err)
	}
}

func TestLoadKeyFileRefusesReadableByOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.key")
	if _, err := mesh.CreateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := mesh.LoadKeyFile(path); err == nil {
			t.Errorf("LoadKeyFile accepted a key file with mode %v", mode)
		}
	}
	for _, mode := range []fs.FileMode{0o600, 0o400} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := mesh.LoadKeyFile(path); err != nil {
			t.Errorf("LoadKeyFile refused mode %v: %v", mode, err)
		}
	}
}

func TestLoadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := mesh.LoadKeyFile(filepath.Join(dir, "missing.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
	garbage := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mesh.LoadKeyFile(garbage); err == nil {
		t.Error("LoadKeyFile accepted garbage")
	}
	empty := filepath.Join(dir, "empty.key")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mesh.LoadKeyFile(empty); err == nil {
		t.Error("LoadKeyFile accepted an empty file")
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peer.key")
	first, err := mesh.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := mesh.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equals(second) {
		t.Error("LoadOrCreateKeyFile made a new key over an existing one")
	}
	// An unsafe key file is an error, never a reason to make a new key.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := mesh.LoadOrCreateKeyFile(path); err == nil {
		t.Error("LoadOrCreateKeyFile accepted a world-readable key")
	}
}

func TestKeySigner(t *testing.T) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := peer.IDFromPrivateKey(priv)
	if s.PeerID() != want {
		t.Errorf("PeerID = %s, want %s", s.PeerID(), want)
	}
	var _ mesh.Signer = s
}

func TestVerifySignature(t *testing.T) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := peer.IDFromPrivateKey(otherKey)

	msg := []byte("jump grant for web-01")
	sig, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := mesh.VerifySignature(s.PeerID(), msg, sig); err != nil {
		t.Fatalf("good signature: %v", err)
	}

	flipped := func(b []byte, i int) []byte {
		out := bytes.Clone(b)
		out[i] ^= 0x80
		return out
	}
	bad := []struct {
		name     string
		id       peer.ID
		msg, sig []byte
	}{
		{"message changed", s.PeerID(), flipped(msg, 0), sig},
		{"message extended", s.PeerID(), append(bytes.Clone(msg), '!'), sig},
		{"empty message", s.PeerID(), nil, sig},
		{"signature changed", s.PeerID(), msg, flipped(sig, 5)},
		{"signature truncated", s.PeerID(), msg, sig[:len(sig)-1]},
		{"signature empty", s.PeerID(), msg, nil},
		{"other signer", other, msg, sig},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if err := mesh.VerifySignature(tc.id, tc.msg, tc.sig); !errors.Is(err, mesh.ErrBadSignature) {
				t.Errorf("got %v, want ErrBadSignature", err)
			}
		})
	}

	t.Run("peer ID without embedded key", func(t *testing.T) {
		hashed, err := multihash.Sum([]byte("some rsa key"), multihash.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		err = mesh.VerifySignature(peer.ID(hashed), msg, sig)
		if err == nil {
			t.Fatal("verified against a peer ID with no key")
		}
		if errors.Is(err, mesh.ErrBadSignature) {
			t.Errorf("a missing key reported as a bad signature: %v", err)
		}
	})
	t.Run("empty peer ID", func(t *testing.T) {
		if err := mesh.VerifySignature("", msg, sig); err == nil {
			t.Fatal("verified against an empty peer ID")
		}
	})
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := mesh.WriteFileAtomic(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := mesh.WriteFileAtomic(path, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(got) != "two" || st.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %v", got, st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if err := mesh.WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
