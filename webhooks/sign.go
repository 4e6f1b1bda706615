package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every Standard Webhooks secret: "whsec_" and the
// key's standard base64.
const SecretPrefix = "whsec_"

// Secret key sizes the Standard Webhooks spec allows (bytes).
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// ParseSecret decodes a "whsec_<base64>" secret into its key. The key must
// be 24 to 64 bytes long (the spec's bounds).
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("must start with %q (a Standard Webhooks secret: whsec_ and base64)", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("the part after %s is not standard base64: %v", SecretPrefix, err)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("key is %d bytes, want %d to %d", len(key), minSecretBytes, maxSecretBytes)
	}
	return key, nil
}

// ParseSecrets parses a space-separated list of secrets (several during a
// rotation: each delivery is signed with every one).
func ParseSecrets(s string) ([][]byte, error) {
	var keys [][]byte
	fields := strings.Fields(s)
	for i, f := range fields {
		k, err := ParseSecret(f)
		if err != nil {
			if len(fields) > 1 {
				return nil, fmt.Errorf("secret %d of %d: %w", i+1, len(fields), err)
			}
			return nil, fmt.Errorf("secret: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per key, space-separated
// ("" without keys).
func Sign(id string, ts time.Time, body []byte, keys [][]byte) string {
	sigs := make([]string, 0, len(keys))
	unix := strconv.FormatInt(ts.Unix(), 10)
	for _, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(id))
		m.Write([]byte("."))
		m.Write([]byte(unix))
		m.Write([]byte("."))
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}
