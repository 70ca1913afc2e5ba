// Package sqlcheck runs SQL statements through deploy/sqlcheck, a current
// ClickHouse engine in-process (chdb under Node.js), so tests can prove
// that SQL written for the old server also works on a current one.
package sqlcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Statement is one statement to check; the JSON matches the script's input.
type Statement struct {
	// Name labels the statement in the report.
	Name string `json:"name"`
	SQL  string `json:"sql"`
	// Params replace the `?` placeholders outside quotes, in order, as
	// ClickHouse literals (strings quoted, numbers as they are).
	Params []any `json:"params,omitempty"`
	// Mode is "run" (the default: executed in the session, in order) or
	// "parse" (syntax only, for DDL that needs a cluster or Keeper).
	Mode string `json:"mode,omitempty"`
	// Output asks for the result rows (JSONEachRow) in Result.Output.
	Output bool `json:"output,omitempty"`
}

// Result is the outcome of one statement.
type Result struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
}

// Report is what the script prints.
type Report struct {
	// Engine is the version of the ClickHouse engine that ran the check.
	Engine  string   `json:"engine"`
	Results []Result `json:"results"`
}

// ErrNotInstalled is returned when Node.js or the chdb package is missing.
var ErrNotInstalled = errors.New("the current-engine check is not installed: install Node.js 18+ and run `npm install --prefix deploy/sqlcheck` from the repository root")

// Script finds deploy/sqlcheck/sqlcheck.js above the working directory.
func Script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "deploy", "sqlcheck", "sqlcheck.js")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("deploy/sqlcheck/sqlcheck.js not found above the working directory")
		}
		dir = parent
	}
}

// Run sends stmts, executed in order in one fresh session of database
// `database`, through the script and returns its report.
func Run(database string, stmts []Statement) (Report, error) {
	script, err := Script()
	if err != nil {
		return Report{}, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return Report{}, fmt.Errorf("%w (%v)", ErrNotInstalled, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "chdb")); err != nil {
		return Report{}, fmt.Errorf("%w (%v)", ErrNotInstalled, err)
	}
	in, err := json.Marshal(map[string]any{"database": database, "statements": stmts})
	if err != nil {
		return Report{}, err
	}
	cmd := exec.Command(node, script)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return Report{}, fmt.Errorf("sqlcheck: %v; stderr: %s; output: %w", runErr, stderr.String(), err)
	}
	return rep, nil
}

// Check runs stmts and fails the test for every statement that failed.
func Check(t testing.TB, database string, stmts []Statement) Report {
	t.Helper()
	rep, err := Run(database, stmts)
	if err != nil {
		t.Fatalf("current-engine check: %v", err)
	}
	if len(rep.Results) != len(stmts) {
		t.Fatalf("current-engine check reported %d results for %d statements", len(rep.Results), len(stmts))
	}
	for i, r := range rep.Results {
		if !r.OK {
			t.Errorf("ClickHouse %s rejects %s: %s\n%s", rep.Engine, r.Name, r.Error, stmts[i].SQL)
		}
	}
	return rep
}
