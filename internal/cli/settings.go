package cli

import (
	"strconv"
	"time"
)

// setString, setInt and setDuration make the setters that the settings
// resolvers (flag > env > config file) apply to a value read from the
// environment or a config file; a value that does not parse is an error
// naming where it came from (the caller adds that).
func setString(p *string) func(string) error {
	return func(v string) error { *p = v; return nil }
}

func setInt(p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		*p = n
		return nil
	}
}

func setDuration(p *time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*p = d
		return nil
	}
}
