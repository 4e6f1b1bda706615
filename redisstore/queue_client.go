package redisstore

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// OpenClient returns a client for spec, the --redis setting: one
// redis:// or rediss:// URL (redis.ParseURL: database, password, TLS), or a
// comma-separated list of host:port Redis Cluster seed addresses. A single
// host:port without a scheme is a single server. The client has no
// command retries longer than a few seconds, so callers see
// [engine.ErrUnavailable] promptly while Redis is down; it connects lazily.
func OpenClient(spec string) (redis.UniversalClient, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, errors.New("redis: empty address")
	}
	if strings.Contains(spec, "://") {
		if strings.Contains(spec, ",") {
			return nil, fmt.Errorf("redis %q: give one URL, or a comma-separated list of host:port cluster addresses", spec)
		}
		opt, err := redis.ParseURL(spec)
		if err != nil {
			return nil, fmt.Errorf("redis %q: %w", spec, err)
		}
		opt.DialTimeout = 2 * time.Second
		return redis.NewClient(opt), nil
	}
	var addrs []string
	for _, a := range strings.Split(spec, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 1 {
		return redis.NewClient(&redis.Options{Addr: addrs[0], DialTimeout: 2 * time.Second}), nil
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, DialTimeout: 2 * time.Second, IsClusterMode: true}), nil
}
