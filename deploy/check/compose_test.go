package check

import (
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

const composeFile = "../../docker-compose.yml"

// loadCompose parses docker-compose.yml as `docker compose config` does
// (interpolation, merges, the compose-spec schema), with env as the
// environment it is run in.
func loadCompose(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithName("alumini"), cli.WithWorkingDirectory("../.."), cli.WithEnv(env), cli.WithDiscardEnvFile)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func TestComposeWantsTheVisitorSecret(t *testing.T) {
	if _, err := loadCompose(t); err == nil || !strings.Contains(err.Error(), "ALUMINI_VISITOR_SECRET") {
		t.Errorf("loading docker-compose.yml without ALUMINI_VISITOR_SECRET = %v; want an error naming it", err)
	}
}

func TestComposeRunsTheServicesAsConfigured(t *testing.T) {
	secret := strings.Repeat("s", 32)
	p, err := loadCompose(t, "ALUMINI_VISITOR_SECRET="+secret)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	want := append([]string{"kafka", "clickhouse", "prometheus"}, services...)
	slices.Sort(want)
	if got := p.ServiceNames(); !slices.Equal(got, want) {
		t.Errorf("services %v; want %v", got, want)
	}

	scrape := scrapeTargets(t)
	for _, name := range services {
		s, ok := p.Services[name]
		if !ok {
			continue
		}
		if s.Build == nil || s.Build.Args["SERVICE"] == nil || *s.Build.Args["SERVICE"] != name {
			t.Errorf("%s: builds %+v; want deploy/Dockerfile with SERVICE=%s", name, s.Build, name)
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		checkEnv(t, "docker-compose.yml", name, env)
		if name == "enricher" && env["ALUMINI_VISITOR_SECRET"] != secret {
			t.Errorf("enricher: ALUMINI_VISITOR_SECRET = %q; want the environment's", env["ALUMINI_VISITOR_SECRET"])
		}
		if !s.ReadOnly {
			t.Errorf("%s: not read_only; the services write no files", name)
		}

		// Prometheus scrapes <service>:<admin port>.
		_, adminPort, err := net.SplitHostPort(env["ALUMINI_ADMIN_ADDR"])
		if err != nil || strings.HasPrefix(env["ALUMINI_ADMIN_ADDR"], "127.") {
			t.Errorf("%s: ALUMINI_ADMIN_ADDR=%q; want an address other containers reach", name, env["ALUMINI_ADMIN_ADDR"])
		}
		if target := scrape["alumini-"+name]; target != name+":"+adminPort {
			t.Errorf("prometheus-compose.yml scrapes alumini-%s at %q; the service serves metrics on %s:%s", name, target, name, adminPort)
		}

		// Published ports reach the listener.
		if listen, ok := env["ALUMINI_LISTEN_ADDR"]; ok {
			_, port, err := net.SplitHostPort(listen)
			if err != nil {
				t.Errorf("%s: ALUMINI_LISTEN_ADDR=%q: %v", name, listen, err)
			}
			if len(s.Ports) != 1 || port != strconv.FormatUint(uint64(s.Ports[0].Target), 10) {
				t.Errorf("%s: ports %+v; want one publishing the listener's port %s", name, s.Ports, port)
			}
		} else if len(s.Ports) > 0 {
			t.Errorf("%s publishes %+v but has no public listener", name, s.Ports)
		}

		// Started once what it needs answers its health check.
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: depends on %s with condition %q; want %s", name, dep, d.Condition, types.ServiceConditionHealthy)
			}
			if hc := p.Services[dep].HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
				t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
			}
		}
		if len(s.DependsOn) == 0 {
			t.Errorf("%s starts without waiting for Kafka or ClickHouse", name)
		}
	}
}

// scrapeTargets maps each job of prometheus-compose.yml to its target.
func scrapeTargets(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../prometheus/prometheus-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			jobs[sc.JobName] = strings.Join(st.Targets, ",")
		}
	}
	return jobs
}
