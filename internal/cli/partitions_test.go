package cli

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// --partitions and PYOCO_PARTITIONS are checked before anything starts,
// on the server and on the worker alike.
func TestPartitionsSetting(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"WorkerFlagZero", []string{"worker", "--redis", "127.0.0.1:1", "--partitions", "0"}, nil, "--partitions 0: want 1 to 1024"},
		{"WorkerEnvTooMany", []string{"worker", "--redis", "127.0.0.1:1"}, map[string]string{"PYOCO_PARTITIONS": "1025"}, "--partitions 1025: want 1 to 1024"},
		{"WorkerEnvNotANumber", []string{"worker", "--redis", "127.0.0.1:1"}, map[string]string{"PYOCO_PARTITIONS": "six"}, `PYOCO_PARTITIONS="six"`},
		{"ServerFlagNegative", []string{"server", "--redis", "127.0.0.1:1", "--partitions", "-2"}, nil, "--partitions -2: want 1 to 1024"},
		{"ServerEnvTooMany", []string{"server", "--redis", "127.0.0.1:1"}, map[string]string{"PYOCO_PARTITIONS": "5000"}, "--partitions 5000: want 1 to 1024"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, stdout, stderr := pluginTestEnv(tt.env)
			root := newRoot(e)
			root.SetArgs(tt.args)
			root.SetOut(stdout)
			root.SetErr(stderr)
			err := root.ExecuteContext(context.Background())
			require.ErrorContains(t, err, tt.want)
		})
	}
}
