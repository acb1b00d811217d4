package mesh

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// KeyFileMode is the permission of every private key file jumpmesh writes.
const KeyFileMode = 0o600

// CreateKeyFile makes a new Ed25519 identity and writes it to path, which
// must not exist yet. On error nothing is left at path.
func CreateKeyFile(path string) (crypto.PrivKey, error) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	raw, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, KeyFileMode)
	if err != nil {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	_, werr := f.Write(raw)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("writing key file %s: %w", path, err)
	}
	return priv, nil
}

// LoadKeyFile reads a key written by CreateKeyFile. It refuses key files that
// other users can read.
func LoadKeyFile(path string) (crypto.PrivKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %v; it must not be readable by others (chmod 600)", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	priv, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding key file %s: %w", path, err)
	}
	return priv, nil
}

// LoadOrCreateKeyFile loads the key at path, creating it first if missing.
func LoadOrCreateKeyFile(path string) (crypto.PrivKey, error) {
	priv, err := LoadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return CreateKeyFile(path)
	}
	return priv, err
}

// Signer signs on behalf of a party's identity. The site key file is one
// implementation; an external key store can be another.
type Signer interface {
	PeerID() peer.ID
	Sign(msg []byte) ([]byte, error)
}

// KeySigner signs with an in-memory private key.
type KeySigner struct {
	key crypto.PrivKey
	id  peer.ID
}

// NewKeySigner wraps key as a Signer.
func NewKeySigner(key crypto.PrivKey) (*KeySigner, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("deriving peer ID: %w", err)
	}
	return &KeySigner{key: key, id: id}, nil
}

func (s *KeySigner) PeerID() peer.ID { return s.id }

func (s *KeySigner) Sign(msg []byte) ([]byte, error) { return s.key.Sign(msg) }

// ErrBadSignature is returned by VerifySignature for a signature that does
// not match.
var ErrBadSignature = errors.New("signature does not match")

// VerifySignature checks sig over msg against the public key embedded in id
// (Ed25519 peer IDs embed their key, so no lookup is needed).
func VerifySignature(id peer.ID, msg, sig []byte) error {
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("extracting public key of %s: %w", id, err)
	}
	ok, err := pub.Verify(msg, sig)
	if err != nil {
		return fmt.Errorf("verifying signature: %w", err)
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}
