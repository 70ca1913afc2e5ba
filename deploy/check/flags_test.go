package check

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// services are the four binaries the deployment files run.
var services = []string{"collector", "enricher", "sinker", "reporter"}

// flag is one flag of a service as its -h lists it.
type flag struct {
	Name, Type, Env string
}

// serviceFlags maps a service to its flags by environment variable; filled
// by TestMain from the built binaries, so the checks see exactly what the
// services parse (envflag ignores variables that name no flag, so a typo
// in a deployment file would otherwise go unnoticed).
var serviceFlags map[string]map[string]flag

func TestMain(m *testing.M) {
	// Helm logs each symlink it follows (files/ links to the one copy of
	// the dashboard and alert rules); the tests check the content instead.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	flags, err := loadFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serviceFlags = flags
	os.Exit(m.Run())
}

// usageLine is envflag.Usage's line for one flag: "  -name type\t(ENV)".
// The type is empty for a bool, and a usage's `quoted words` replace it.
var usageLine = regexp.MustCompile(`^  -([a-z0-9.-]+) (.*)\t\((ALUMINI_[A-Z0-9_]+)\)$`)

func loadFlags() (map[string]map[string]flag, error) {
	bin, err := os.MkdirTemp("", "alumini-check-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bin)
	args := []string{"build", "-o", bin + "/"}
	for _, s := range services {
		args = append(args, "../../"+s)
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	all := map[string]map[string]flag{}
	for _, s := range services {
		out, err := exec.Command(filepath.Join(bin, s), "-h").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%s -h: %w\n%s", s, err, out)
		}
		flags := map[string]flag{}
		for _, line := range strings.Split(string(out), "\n") {
			if m := usageLine.FindStringSubmatch(line); m != nil {
				flags[m[3]] = flag{Name: m[1], Type: m[2], Env: m[3]}
			}
		}
		// Every service has these; fewer found means the usage format
		// changed and this parser no longer reads it.
		for _, env := range []string{"ALUMINI_ADMIN_ADDR", "ALUMINI_DRAIN_DELAY", "ALUMINI_SHUTDOWN_TIMEOUT"} {
			if _, ok := flags[env]; !ok {
				return nil, fmt.Errorf("%s -h lists no %s; output:\n%s", s, env, out)
			}
		}
		all[s] = flags
	}
	return all, nil
}

// checkEnv reports an error for each variable that sets no flag of the
// service, or whose value the flag's type would refuse at start.
func checkEnv(t *testing.T, where, service string, env map[string]string) {
	t.Helper()
	flags := serviceFlags[service]
	for name, value := range env {
		if !strings.HasPrefix(name, "ALUMINI_") {
			continue
		}
		f, ok := flags[name]
		if !ok {
			t.Errorf("%s: %s sets %s, which is no flag of %s", where, service, name, service)
			continue
		}
		if err := parseAs(f.Type, value); err != nil {
			t.Errorf("%s: %s=%q: -%s wants a %s: %v", where, name, value, f.Name, f.Type, err)
		}
	}
}

// parseAs parses value as the flag package parses a flag of that type
// (UnquoteUsage's names; "" is a bool).
func parseAs(typ, value string) error {
	var err error
	switch typ {
	case "":
		_, err = strconv.ParseBool(value)
	case "int":
		_, err = strconv.ParseInt(value, 0, strconv.IntSize)
	case "uint":
		_, err = strconv.ParseUint(value, 0, strconv.IntSize)
	case "float":
		_, err = strconv.ParseFloat(value, 64)
	case "duration":
		_, err = time.ParseDuration(value)
	}
	return err
}

func TestParseAsRefusesWhatFlagsRefuse(t *testing.T) {
	for _, tc := range []struct{ typ, value string }{
		{"int", "2.097152e+06"}, {"duration", "5"}, {"", "yes"}, {"float", "fast"},
	} {
		if parseAs(tc.typ, tc.value) == nil {
			t.Errorf("parseAs(%q, %q) = nil; want an error", tc.typ, tc.value)
		}
	}
	if f, ok := serviceFlags["collector"]["ALUMINI_MAX_BODY_BYTES"]; !ok || f.Type != "int" {
		t.Errorf("collector flag ALUMINI_MAX_BODY_BYTES = %+v, %v; want an int flag", f, ok)
	}
}
