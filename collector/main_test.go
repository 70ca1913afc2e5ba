package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func parseConfig(t *testing.T, args ...string) *config {
	t.Helper()
	var c config
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse(append([]string{"-clients-file", "clients.yaml"}, args...)); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestValidate(t *testing.T) {
	if err := parseConfig(t).Validate(); err != nil {
		t.Fatalf("defaults: Validate() = %v; want nil", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-trusted-proxies", "10.0.0.0/99"}, "trusted-proxies"},
		{[]string{"-path-event", "/api/batch"}, "are both"},
		{[]string{"-path-script", "t.js"}, "starting with /"},
		{[]string{"-path-pixel", "/v1/p.gif"}, "not /v1/"},
		{[]string{"-max-inflight-bytes", "8000000"}, "nine times max-body-bytes"},
		{[]string{"-max-header-bytes", "1024"}, "max-header-bytes"},
		{[]string{"-ip-rate-limit", "5", "-ip-rate-burst", "0"}, "ip-rate-burst"},
		{[]string{"-max-batch-events", "0"}, "max-batch-events"},
		{[]string{"-client-rate-limit", "-1"}, "must not be negative"},
	} {
		if err := parseConfig(t, tc.args...).Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v; want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}
