package dashboards_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/require"
)

// Static checks of the deployment files: compose.yaml, the Dockerfiles,
// the Prometheus, collector and Grafana configuration. No Docker engine is
// needed; real validators are used where they exist offline (compose-go's
// schema and consistency checks, promtool, the Jaeger v2 binary, which is a
// collector distribution, for the collector configuration).

const repo = ".."

func repoPath(p ...string) string { return filepath.Join(append([]string{repo}, p...)...) }

// tool finds an executable on PATH or at fallback; without it the test
// skips, except under CI=true where it fails.
func tool(t *testing.T, envVar, name string, fallbacks ...string) string {
	t.Helper()
	if envVar != "" {
		if p := os.Getenv(envVar); p != "" {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, f := range fallbacks {
		if st, err := os.Stat(f); err == nil && !st.IsDir() {
			return f
		}
	}
	msg := name + " not found (PATH"
	if envVar != "" {
		msg += ", $" + envVar
	}
	msg += ", " + strings.Join(fallbacks, ", ") + ")"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(repo)
	require.NoError(t, err)
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, "compose.yaml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("pyoco", true) })
	require.NoError(t, err, "compose.yaml must pass compose-go's schema and consistency checks")
	return p
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)

	names := slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	})
	require.Equal(t, []string{"grafana", "jaeger", "otel-collector", "prometheus", "redis", "server", "worker"}, names)

	for name, s := range p.Services {
		require.NotNil(t, s.HealthCheck, "%s has a healthcheck", name)
		require.False(t, s.HealthCheck.Disable, name)
		require.NotEmpty(t, s.HealthCheck.Test, name)
		require.Contains(t, []string{"CMD", "CMD-SHELL"}, s.HealthCheck.Test[0], name)
		require.NotNil(t, s.HealthCheck.Interval, name)
		for dep := range s.DependsOn {
			require.Contains(t, p.Services, dep, "%s depends on a service that exists", name)
		}
		if s.Build != nil {
			ctx := s.Build.Context
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			require.FileExists(t, filepath.Join(ctx, df), "%s's Dockerfile", name)
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				_, err := os.Stat(v.Source)
				require.NoError(t, err, "%s mounts %s, which must exist in the repository", name, v.Source)
			}
		}
	}

	// Third-party images are pinned to a version.
	for name, s := range p.Services {
		if s.Build != nil {
			continue
		}
		require.Regexp(t, `:v?[0-9][^:]*$`, s.Image, "%s: pin the image version", name)
	}

	// Redis: append-only file on a named volume.
	redis := p.Services["redis"]
	require.Contains(t, strings.Join(redis.Command, " "), "--appendonly yes")
	require.True(t, slices.ContainsFunc(redis.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == "/data"
	}), "redis keeps /data on a volume")

	// Three worker replicas; server and workers send traces to the collector.
	worker := p.Services["worker"]
	require.NotNil(t, worker.Deploy)
	require.NotNil(t, worker.Deploy.Replicas)
	require.Equal(t, 3, *worker.Deploy.Replicas)
	require.Equal(t, "worker", worker.Command[0])
	require.Equal(t, "server", p.Services["server"].Command[0])
	for _, n := range []string{"server", "worker"} {
		env := p.Services[n].Environment
		require.NotNil(t, env["OTEL_EXPORTER_OTLP_ENDPOINT"], n)
		require.Regexp(t, `^http://otel-collector:431[78]$`, *env["OTEL_EXPORTER_OTLP_ENDPOINT"], n)
		require.NotNil(t, env["PYOCO_REDIS_URL"], n)
		require.Equal(t, "redis://redis:6379/0", *env["PYOCO_REDIS_URL"], n)
	}
	// The worker's metrics port is the one Prometheus discovers.
	require.Contains(t, strings.Join(worker.Command, " "), "--metrics-addr :9464")

	// Grafana gets the provisioning and the dashboards where the provider
	// looks for them.
	grafana := p.Services["grafana"]
	mounts := map[string]string{}
	for _, v := range grafana.Volumes {
		if v.Type == types.VolumeTypeBind {
			rel, err := filepath.Rel(p.WorkingDir, v.Source)
			require.NoError(t, err)
			mounts[filepath.ToSlash(rel)] = v.Target
		}
	}
	require.Equal(t, "/etc/grafana/provisioning", mounts["deploy/grafana/provisioning"])
	var provider struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, repoPath("deploy", "grafana", "provisioning", "dashboards", "pyoco.yaml"), &provider)
	require.Len(t, provider.Providers, 1)
	require.Equal(t, mounts["dashboards"], provider.Providers[0].Options.Path)
	require.Equal(t, "yesoreyeram-infinity-datasource", *grafana.Environment["GF_PLUGINS_PREINSTALL"])

	// Prometheus keeps exemplars and reads the repository's config.
	prom := p.Services["prometheus"]
	require.Contains(t, prom.Command, "--enable-feature=exemplar-storage")
}

// TestComposeRejectsBadFile proves the compose validation is real.
func TestComposeRejectsBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := "services:\n  redis:\n    image: redis\n    healthcheck:\n      tset: [CMD, redis-cli, ping]\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(bad), 0o644))
	_, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("bad", true) })
	require.ErrorContains(t, err, "tset")
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v), path)
}

// dockerfile is the parsed shape of a Dockerfile: its stages, each with its
// base image and instructions (continuation lines joined).
type stage struct {
	from  string
	name  string
	instr []string
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var stages []stage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		fields := strings.Fields(line)
		if strings.EqualFold(fields[0], "FROM") {
			st := stage{}
			args := slices.DeleteFunc(fields[1:], func(s string) bool { return strings.HasPrefix(s, "--") })
			require.NotEmpty(t, args, "%s: FROM needs an image", path)
			st.from = args[0]
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				st.name = args[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			require.Contains(t, []string{"ARG"}, strings.ToUpper(fields[0]), "%s: only ARG before the first FROM", path)
			return
		}
		stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, line)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "#") || trimmed == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	require.NoError(t, sc.Err())
	flush()
	return stages
}

// user returns the last USER of a stage.
func (s stage) user() string {
	u := ""
	for _, in := range s.instr {
		if f := strings.Fields(in); strings.EqualFold(f[0], "USER") && len(f) > 1 {
			u = f[1]
		}
	}
	return u
}

func requireNonRoot(t *testing.T, path string, s stage) {
	t.Helper()
	u := s.user()
	require.NotEmpty(t, u, "%s: the final stage sets USER", path)
	name := strings.SplitN(u, ":", 2)[0]
	require.NotContains(t, []string{"root", "0"}, name, "%s: USER is not root", path)
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	path := repoPath("Dockerfile")
	stages := parseDockerfile(t, path)
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage")
	build, final := stages[0], stages[len(stages)-1]
	require.NotEmpty(t, build.name, "the build stage is named")
	require.Regexp(t, `^golang:1\.26`, build.from, "built with Go 1.26")
	all := strings.Join(build.instr, "\n")
	require.Regexp(t, `CGO_ENABLED=0`, all, "static binary")
	require.Regexp(t, `go build .*\./cmd/pyoco`, all)
	require.Regexp(t, `^(alpine|gcr\.io/distroless/static|scratch)`, final.from)
	require.True(t, slices.ContainsFunc(final.instr, func(in string) bool {
		return strings.HasPrefix(in, "COPY --from="+build.name+" ")
	}), "the final stage copies the binary from the build stage")
	requireNonRoot(t, path, final)
	require.Contains(t, strings.Join(final.instr, "\n"), `ENTRYPOINT ["pyoco"]`)

	// Every file the build needs is in the context .dockerignore leaves.
	ignore, err := os.ReadFile(repoPath(".dockerignore"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(ignore), "\n") {
		line = strings.TrimSpace(line)
		for _, needed := range []string{"/go.mod", "/go.sum", "/cmd", "/engine", "/internal", "/api", "/worker", "/redisstore", "/telemetry", "/plugins", "/webhooks"} {
			require.NotEqual(t, needed, line, ".dockerignore must not drop %s", needed)
		}
	}

	// The collector's image: also multi-stage and non-root.
	cpath := repoPath("otel-collector", "Dockerfile")
	cst := parseDockerfile(t, cpath)
	require.GreaterOrEqual(t, len(cst), 2)
	requireNonRoot(t, cpath, cst[len(cst)-1])
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	path := repoPath("deploy", "prometheus", "prometheus.yml")
	promtool := tool(t, "", "promtool", "/usr/bin/promtool")
	out := run(t, promtool, "check", "config", path)
	require.Contains(t, out, "SUCCESS")

	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, path, &cfg)
	var server, worker bool
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			server = server || slices.Contains(s.Targets, "server:8000")
		}
		for _, d := range sc.DNSSDConfigs {
			worker = worker || (slices.Contains(d.Names, "worker") && d.Type == "A" && d.Port == 9464)
		}
	}
	require.True(t, server, "scrapes the server")
	require.True(t, worker, "discovers every worker replica (DNS A records of \"worker\", port 9464)")
}

// TestCollectorConfig validates otel-collector/config.yaml with a
// real collector: the Jaeger v2 binary (the e2e stack test's; CI builds
// it from tools/jaeger), which has the same receivers, processors and
// exporters the file uses, at the collector release the image pins. Only
// the health_check extension (contrib's; Jaeger has healthcheckv2) is left
// out of that run and checked here.
func TestCollectorConfig(t *testing.T) {
	t.Parallel()
	path := repoPath("otel-collector", "config.yaml")
	var cfg map[string]any
	readYAML(t, path, &cfg)

	// The shape the brief asks for.
	var c struct {
		Extensions map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"extensions"`
		Receivers struct {
			OTLP struct {
				Protocols map[string]struct {
					Endpoint string `yaml:"endpoint"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
		Exporters map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"exporters"`
		Service struct {
			Extensions []string `yaml:"extensions"`
			Pipelines  map[string]struct {
				Receivers  []string `yaml:"receivers"`
				Processors []string `yaml:"processors"`
				Exporters  []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	readYAML(t, path, &c)
	require.Equal(t, "0.0.0.0:4317", c.Receivers.OTLP.Protocols["grpc"].Endpoint)
	require.Equal(t, "0.0.0.0:4318", c.Receivers.OTLP.Protocols["http"].Endpoint)
	traces, ok := c.Service.Pipelines["traces"]
	require.True(t, ok)
	require.Equal(t, []string{"otlp"}, traces.Receivers)
	require.Equal(t, []string{"memory_limiter", "batch"}, traces.Processors, "memory_limiter first, then batch")
	require.Contains(t, traces.Exporters, "otlp/jaeger")
	require.Equal(t, "jaeger:4317", c.Exporters["otlp/jaeger"].Endpoint)
	require.Equal(t, []string{"health_check"}, c.Service.Extensions)
	require.Equal(t, "0.0.0.0:13133", c.Extensions["health_check"].Endpoint)

	// The collector image is the release the validating Jaeger embeds.
	jaegerMod, err := os.ReadFile(repoPath("tools", "jaeger", "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*go\.opentelemetry\.io/collector/otelcol v(\S+)`).FindSubmatch(jaegerMod)
	require.NotNil(t, m, "tools/jaeger/go.mod names the collector release")
	df, err := os.ReadFile(repoPath("otel-collector", "Dockerfile"))
	require.NoError(t, err)
	require.Contains(t, string(df), "ARG OTELCOL_VERSION="+string(m[1])+"\n",
		"otel-collector/Dockerfile pins the collector release Jaeger (tools/jaeger) is built on, which validates the config")

	// The image's healthcheck probes that extension.
	p := loadCompose(t)
	require.Contains(t, strings.Join(p.Services["otel-collector"].HealthCheck.Test, " "), "http://127.0.0.1:13133/")

	jaeger := tool(t, "PYOCO_JAEGER_BIN", "jaeger", jaegerCachePath())
	delete(cfg["extensions"].(map[string]any), "health_check")
	if len(cfg["extensions"].(map[string]any)) == 0 {
		delete(cfg, "extensions")
	}
	delete(cfg["service"].(map[string]any), "extensions")
	b, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	tmp := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	run(t, jaeger, "validate", "--config=file:"+tmp)

	// And validate fails on a misspelt setting, so passing means something.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), "limit_mib:", "limit_mibb:", 1)), 0o644))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, jaeger, "validate", "--config=file:"+bad)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), "limit_mibb")
}

// TestCollectorBuild validates the whole of otel-collector/config.yaml,
// health_check extension included, with the collector that the builder
// manifest otel-collector/builder-config.yaml makes (OCB v0.140.0; .ci/run
// builds it into a cache and sets PYOCO_OTELCOL_BIN), and checks that the
// manifest, the image and the config agree on the release.
func TestCollectorBuild(t *testing.T) {
	t.Parallel()
	var manifest struct {
		Dist struct {
			Name    string `yaml:"name"`
			Version string `yaml:"version"`
		} `yaml:"dist"`
		Receivers, Processors, Exporters, Extensions, Providers []struct {
			GoMod string `yaml:"gomod"`
		}
	}
	readYAML(t, repoPath("otel-collector", "builder-config.yaml"), &manifest)
	df, err := os.ReadFile(repoPath("otel-collector", "Dockerfile"))
	require.NoError(t, err)
	require.Contains(t, string(df), "ARG OTELCOL_VERSION="+manifest.Dist.Version+"\n",
		"the image and the builder manifest are one collector release")
	for _, group := range [][]struct {
		GoMod string `yaml:"gomod"`
	}{manifest.Receivers, manifest.Processors, manifest.Exporters, manifest.Extensions} {
		for _, m := range group {
			_, version, ok := strings.Cut(m.GoMod, " ")
			require.True(t, ok, "%q names its version", m.GoMod)
			// Core modules are v<release>; contrib's patch releases may follow.
			require.True(t, strings.HasPrefix(version, "v"+strings.TrimSuffix(manifest.Dist.Version, ".0")+"."),
				"%s: one release for every component (%s)", m.GoMod, manifest.Dist.Version)
		}
	}

	otelcol := tool(t, "PYOCO_OTELCOL_BIN", manifest.Dist.Name, cachedBinary("otelcol-pyoco-*"))
	path := repoPath("otel-collector", "config.yaml")
	run(t, otelcol, "validate", "--config="+path)

	// A misspelt setting fails, so passing means something.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(raw), "endpoint: 0.0.0.0:13133", "endpointt: 0.0.0.0:13133", 1)), 0o644))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, otelcol, "validate", "--config="+bad)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), "endpointt")
}

// cachedBinary is a file of .ci/run's cache (${XDG_CACHE_HOME:-$HOME/.cache}/pyoco)
// matching pattern, or "".
func cachedBinary(pattern string) string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	matches, _ := filepath.Glob(filepath.Join(base, "pyoco", pattern))
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return m
		}
	}
	return ""
}

// jaegerCachePath is where .ci/run caches the Jaeger build
// (${XDG_CACHE_HOME:-$HOME/.cache}/pyoco/jaeger-<hash of tools/jaeger/go.sum>);
// "" when that cannot be worked out.
func jaegerCachePath() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	matches, _ := filepath.Glob(filepath.Join(base, "pyoco", "jaeger-*"))
	for _, m := range matches {
		if strings.Contains(filepath.Base(m), ".tmp") {
			continue // a build in progress
		}
		if st, err := os.Stat(m); err == nil && !st.IsDir() {
			return m
		}
		if st, err := os.Stat(filepath.Join(m, "jaeger")); err == nil && !st.IsDir() {
			return filepath.Join(m, "jaeger")
		}
	}
	return ""
}

func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name     string         `yaml:"name"`
			UID      string         `yaml:"uid"`
			Type     string         `yaml:"type"`
			URL      string         `yaml:"url"`
			JSONData map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, repoPath("deploy", "grafana", "provisioning", "datasources", "pyoco.yaml"), &ds)
	require.Equal(t, 1, ds.APIVersion)
	byUID := map[string]string{}
	urls := map[string]string{}
	for _, d := range ds.Datasources {
		byUID[d.UID] = d.Type
		urls[d.UID] = d.URL
		if d.Type == "prometheus" {
			dest, ok := d.JSONData["exemplarTraceIdDestinations"].([]any)
			require.True(t, ok, "exemplars link to traces")
			require.Len(t, dest, 1)
			link := dest[0].(map[string]any)
			require.Equal(t, "trace_id", link["name"], "the exemplar label the OTel exporter writes")
			require.Equal(t, "jaeger", link["datasourceUid"])
		}
	}
	require.Equal(t, map[string]string{"prometheus": "prometheus", "jaeger": "jaeger", "pyoco-api": "yesoreyeram-infinity-datasource"}, byUID)
	require.Equal(t, "http://prometheus:9090", urls["prometheus"])
	require.Equal(t, "http://jaeger:16686", urls["jaeger"])
	require.Equal(t, "http://server:8000", urls["pyoco-api"])

	// Every data source uid a dashboard names is provisioned (the
	// ${datasource} variable resolves to the Prometheus one).
	for _, file := range dashboardFiles(t) {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		var doc any
		require.NoError(t, json.Unmarshal(b, &doc))
		refs := datasourceRefs(doc, nil)
		require.NotEmpty(t, refs)
		for _, uid := range refs {
			if uid == "${datasource}" {
				continue
			}
			require.Contains(t, byUID, uid, "%s refers to data source %q", file, uid)
		}
	}
}

// datasourceRefs collects the uid of every "datasource" object and every
// "datasourceUid" (links) in a dashboard.
func datasourceRefs(v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "datasource":
				if m, ok := e.(map[string]any); ok {
					if uid, ok := m["uid"].(string); ok {
						out = append(out, uid)
					}
				}
			case "datasourceUid":
				if uid, ok := e.(string); ok {
					out = append(out, uid)
				}
			}
			out = datasourceRefs(e, out)
		}
	case []any:
		for _, e := range x {
			out = datasourceRefs(e, out)
		}
	}
	return out
}

// TestDemoFlowsExist: compose.yaml mounts deploy/flows; exporter_test.go
// loads every one of them with the API's loader and runs them.
func TestDemoFlowsExist(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(repoPath("deploy", "flows", "*.yaml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3)
}
