package clientfile

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// yamlNames are the YAML names of t's fields, nested ones as parent.child.
func yamlNames(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := prefix + f.Tag.Get("yaml")
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlNames(f.Type, name+".")...)
			continue
		}
		out = append(out, name)
	}
	return out
}

// TestEveryRegistryFieldIsASetting fails when a field is added to the
// registry that operators cannot set: its id and API keys aside (API keys
// are issued, never set), every field has a setting of the same name.
func TestEveryRegistryFieldIsASetting(t *testing.T) {
	settings := map[string]bool{}
	var walk func(reflect.Type, string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := prefix + strings.TrimSuffix(f.Tag.Get("json"), ",omitempty")
			if f.Type.Elem().Kind() == reflect.Struct {
				walk(f.Type.Elem(), name+".")
				continue
			}
			settings[name] = true
		}
	}
	walk(reflect.TypeFor[Settings](), "")
	for _, name := range yamlNames(reflect.TypeFor[registry.Client](), "") {
		if name == "id" || name == "api_key_hashes" {
			continue
		}
		if !settings[name] {
			t.Errorf("registry field %s has no setting: operators cannot change it", name)
		}
	}
}

// TestEverySettingReachesTheFile sets every field through the command's
// flags and through JSON (the PATCH body) and reads them back from the
// registry file.
func TestEverySettingReachesTheFile(t *testing.T) {
	hash := registry.HashAPIKey("server-secret")
	args := []string{"-name", "News", "-domains", "news.example,www.news.example", "-write-keys", "wk_news",
		"-respect-dnt", "true", "-cookie-mode", "cookieless", "-retention-days", "30", "-time-zone", "Europe/Berlin",
		"-bots", "drop", "-keep-truncated-ip=false", "-rate-limit-per-second", "12.5", "-rate-limit-burst", "600",
		"-server-key-hashes", hash, "-allowed-properties", "plan,size", "-exclude-ip-ranges", "192.0.2.0/24",
		"-exclude-hostnames", "staging.news.example", "-exclude-paths", "/admin/*", "-child-directed=true",
		"-umami-website-ids", "6a1b1f0c-0b5e-4c39-a5e9-3d8ea6c5d001"}
	body := `{"name":"News","domains":["news.example","www.news.example"],"write_keys":["wk_news"],"respect_dnt":true,
		"cookie_mode":"cookieless","retention_days":30,"time_zone":"Europe/Berlin","bots":"drop","keep_truncated_ip":false,
		"rate_limit_per_second":12.5,"rate_limit_burst":600,"server_key_hashes":["` + hash + `"],
		"allowed_properties":["plan","size"],"exclude":{"ip_ranges":["192.0.2.0/24"],"hostnames":["staging.news.example"],
		"paths":["/admin/*"]},"child_directed":true,"umami_website_ids":["6a1b1f0c-0b5e-4c39-a5e9-3d8ea6c5d001"]}`
	want := registry.Client{ID: "news", Name: "News", Domains: []string{"news.example", "www.news.example"},
		WriteKeys: []string{"wk_news"}, APIKeyHashes: []string{}, RespectDNT: true, CookieMode: "cookieless", RetentionDays: 30,
		TimeZone: "Europe/Berlin", Bots: "drop", RateLimitPerSecond: 12.5, RateLimitBurst: 600,
		ServerKeyHashes: []string{hash}, AllowedProperties: []string{"plan", "size"},
		Exclude:       registry.Exclusions{IPRanges: []string{"192.0.2.0/24"}, Hostnames: []string{"staging.news.example"}, Paths: []string{"/admin/*"}},
		ChildDirected: true, UmamiWebsiteIDs: []string{"6a1b1f0c-0b5e-4c39-a5e9-3d8ea6c5d001"}}

	fromFlags := func(t *testing.T) Settings {
		var s Settings
		fs := flag.NewFlagSet("set", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s.Flags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return s
	}
	fromJSON := func(t *testing.T) Settings {
		var s Settings
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, settings := range map[string]func(*testing.T) Settings{"flags": fromFlags, "json": fromJSON} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clients.yaml")
			if err := os.WriteFile(path, []byte("clients: [{id: news, cookie_mode: cookie}]\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f := New(path)
			if err := f.Update("news", settings(t)); err != nil {
				t.Fatalf("Update = %v", err)
			}
			cs, err := f.List()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cs[0], want) {
				t.Errorf("client after set =\n%+v\nwant\n%+v", cs[0], want)
			}
			// Unset settings stay; an empty list empties one.
			var s Settings
			fs := flag.NewFlagSet("set", flag.ContinueOnError)
			s.Flags(fs)
			if err := fs.Parse([]string{"-exclude-paths", ""}); err != nil {
				t.Fatal(err)
			}
			if err := f.Update("news", s); err != nil {
				t.Fatal(err)
			}
			cs, _ = f.List()
			w := want
			w.Exclude.Paths = []string{}
			if !reflect.DeepEqual(cs[0], w) {
				t.Errorf("client after emptying exclude.paths =\n%+v\nwant\n%+v", cs[0], w)
			}
		})
	}
}

func TestInvalidSettingIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(path, []byte("clients: [{id: news, cookie_mode: cookie}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yes := true
	err := New(path).Update("news", Settings{ChildDirected: &yes})
	if err == nil || !strings.Contains(err.Error(), "would make the registry invalid") || !strings.Contains(err.Error(), "child_directed") {
		t.Errorf("Update(child_directed on a cookie client) = %v; want the registry's refusal", err)
	}
}
