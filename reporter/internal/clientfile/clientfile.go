// Package clientfile edits the client registry YAML for operators: it adds
// clients, issues and rotates API keys and changes settings, validating
// every new version with registry.Parse and replacing the file atomically,
// so the services' reloaders only ever see a whole, valid registry.
package clientfile

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/aluminiapp/pipeline/lib/registry"
)

// ErrNotFound is returned for an unknown client id.
var ErrNotFound = errors.New("no such client")

// ErrExists is returned when adding a client id that is taken.
var ErrExists = errors.New("client already exists")

// File is the registry file at one path.
type File struct {
	path string
	// mu serialises edits in this process; the flock on path+".lock"
	// serialises them with `reporter clients` commands run beside it.
	mu sync.Mutex
}

// New returns the editor of the registry at path.
func New(path string) *File { return &File{path: path} }

// document mirrors the registry's YAML layout.
type document struct {
	Clients []registry.Client `yaml:"clients"`
}

// List returns the clients as the file holds them now.
func (f *File) List() ([]registry.Client, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("reading client registry: %w", err)
	}
	return registry.Parse(data)
}

// edit applies change to the current clients under the locks, validates
// the result and replaces the file.
func (f *File) edit(change func([]registry.Client) ([]registry.Client, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	lock, err := os.OpenFile(f.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("locking client registry: %w", err)
	}
	defer lock.Close() // closing also drops the flock.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking client registry: %w", err)
	}
	clients, err := f.List()
	if err != nil {
		return err
	}
	clients, err = change(clients)
	if err != nil {
		return err
	}
	data, err := yaml.Marshal(document{Clients: clients})
	if err != nil {
		return fmt.Errorf("encoding client registry: %w", err)
	}
	if _, err := registry.Parse(data); err != nil {
		return fmt.Errorf("the change would make the registry invalid: %w", err)
	}
	return writeAtomic(f.path, append([]byte("# Written by `reporter clients`; comments are not kept.\n"), data...))
}

// writeAtomic writes data beside path, syncs it and renames it over path,
// keeping path's permissions.
func writeAtomic(path string, data []byte) (err error) {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".clients-*.yaml")
	if err != nil {
		return fmt.Errorf("writing client registry: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.Remove(tmp.Name()))
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return errors.Join(fmt.Errorf("writing client registry: %w", err), tmp.Close())
	}
	if err := tmp.Chmod(mode); err != nil {
		return errors.Join(fmt.Errorf("writing client registry: %w", err), tmp.Close())
	}
	if err := tmp.Sync(); err != nil {
		return errors.Join(fmt.Errorf("writing client registry: %w", err), tmp.Close())
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing client registry: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing client registry: %w", err)
	}
	return nil
}

// Add adds a new client with settings c (its API key hashes are ignored)
// and returns its first API key, to be shown once.
func (f *File) Add(c registry.Client) (string, error) {
	key, err := registry.NewAPIKey()
	if err != nil {
		return "", err
	}
	c.APIKeyHashes = []string{registry.HashAPIKey(key)}
	err = f.edit(func(cs []registry.Client) ([]registry.Client, error) {
		if slices.ContainsFunc(cs, func(o registry.Client) bool { return o.ID == c.ID }) {
			return nil, fmt.Errorf("%w: %s", ErrExists, c.ID)
		}
		return append(cs, c), nil
	})
	if err != nil {
		return "", err
	}
	return key, nil
}

// IssueKey adds an API key to a client; with rotate, the new key replaces
// all others. It returns the key, to be shown once.
func (f *File) IssueKey(id string, rotate bool) (string, error) {
	key, err := registry.NewAPIKey()
	if err != nil {
		return "", err
	}
	err = f.update(id, func(c *registry.Client) error {
		if rotate {
			c.APIKeyHashes = nil
		}
		c.APIKeyHashes = append(c.APIKeyHashes, registry.HashAPIKey(key))
		return nil
	})
	if err != nil {
		return "", err
	}
	return key, nil
}

// Settings are the client settings an operator may change: every field of
// registry.Client but its id and API keys (issued with IssueKey). Nil
// fields stay as they are; a list given replaces the list. The JSON names
// are the registry's YAML names, and Flags derives the command's flags
// from them, so the file, the endpoint and the command cannot disagree.
type Settings struct {
	Name               *string            `json:"name,omitempty"`
	Domains            *[]string          `json:"domains,omitempty"`
	WriteKeys          *[]string          `json:"write_keys,omitempty"`
	RespectDNT         *bool              `json:"respect_dnt,omitempty"`
	CookieMode         *string            `json:"cookie_mode,omitempty"`
	RetentionDays      *int               `json:"retention_days,omitempty"`
	TimeZone           *string            `json:"time_zone,omitempty"`
	Bots               *string            `json:"bots,omitempty"`
	KeepTruncatedIP    *bool              `json:"keep_truncated_ip,omitempty"`
	RateLimitPerSecond *float64           `json:"rate_limit_per_second,omitempty"`
	RateLimitBurst     *int               `json:"rate_limit_burst,omitempty"`
	ServerKeyHashes    *[]string          `json:"server_key_hashes,omitempty"`
	AllowedProperties  *[]string          `json:"allowed_properties,omitempty"`
	Exclude            *ExclusionSettings `json:"exclude,omitempty"`
	ChildDirected      *bool              `json:"child_directed,omitempty"`
	UmamiWebsiteIDs    *[]string          `json:"umami_website_ids,omitempty"`
}

// ExclusionSettings change a client's exclusion rules; nil lists stay.
type ExclusionSettings struct {
	IPRanges  *[]string `json:"ip_ranges,omitempty"`
	Hostnames *[]string `json:"hostnames,omitempty"`
	Paths     *[]string `json:"paths,omitempty"`
}

// Apply sets the given settings on c.
func (s Settings) Apply(c *registry.Client) {
	set(&c.Name, s.Name)
	set(&c.Domains, s.Domains)
	set(&c.WriteKeys, s.WriteKeys)
	set(&c.RespectDNT, s.RespectDNT)
	set(&c.CookieMode, s.CookieMode)
	set(&c.RetentionDays, s.RetentionDays)
	set(&c.TimeZone, s.TimeZone)
	set(&c.Bots, s.Bots)
	set(&c.KeepTruncatedIP, s.KeepTruncatedIP)
	set(&c.RateLimitPerSecond, s.RateLimitPerSecond)
	set(&c.RateLimitBurst, s.RateLimitBurst)
	set(&c.ServerKeyHashes, s.ServerKeyHashes)
	set(&c.AllowedProperties, s.AllowedProperties)
	if e := s.Exclude; e != nil {
		set(&c.Exclude.IPRanges, e.IPRanges)
		set(&c.Exclude.Hostnames, e.Hostnames)
		set(&c.Exclude.Paths, e.Paths)
	}
	set(&c.ChildDirected, s.ChildDirected)
	set(&c.UmamiWebsiteIDs, s.UmamiWebsiteIDs)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// Flags registers one flag per setting on fs, named after its JSON name
// with '-' for '_' (exclude.ip_ranges is -exclude-ip-ranges); lists are
// comma-separated, and an empty value empties the list.
func (s *Settings) Flags(fs *flag.FlagSet) {
	if s.Exclude == nil {
		s.Exclude = &ExclusionSettings{}
	}
	addFlags(fs, "", reflect.ValueOf(s).Elem())
}

func addFlags(fs *flag.FlagSet, prefix string, v reflect.Value) {
	for i := range v.NumField() {
		f, field := v.Type().Field(i), v.Field(i)
		name := prefix + strings.ReplaceAll(strings.TrimSuffix(f.Tag.Get("json"), ",omitempty"), "_", "-")
		if f.Type.Elem().Kind() == reflect.Struct {
			addFlags(fs, name+"-", field.Elem())
			continue
		}
		fs.Func(name, "registry field "+strings.ReplaceAll(name, "-", "_"), func(text string) error {
			val := reflect.New(f.Type.Elem())
			switch p := val.Interface().(type) {
			case *string:
				*p = text
			case *[]string:
				*p = []string{}
				for _, part := range strings.Split(text, ",") {
					if part = strings.TrimSpace(part); part != "" {
						*p = append(*p, part)
					}
				}
			case *bool:
				b, err := strconv.ParseBool(text)
				if err != nil {
					return errors.New("want true or false")
				}
				*p = b
			case *int:
				n, err := strconv.Atoi(text)
				if err != nil {
					return errors.New("want a whole number")
				}
				*p = n
			case *float64:
				x, err := strconv.ParseFloat(text, 64)
				if err != nil {
					return errors.New("want a number")
				}
				*p = x
			default:
				return fmt.Errorf("setting of type %s has no flag form", f.Type)
			}
			field.Set(val)
			return nil
		})
	}
}

// View is a client as operators see it: every setting, with the API and
// server key hashes counted, never shown.
type View struct {
	ID                 string              `json:"id"`
	Name               string              `json:"name"`
	Domains            []string            `json:"domains"`
	WriteKeys          []string            `json:"write_keys"`
	APIKeys            int                 `json:"api_keys"`
	ServerKeys         int                 `json:"server_keys"`
	RespectDNT         bool                `json:"respect_dnt"`
	CookieMode         string              `json:"cookie_mode"`
	RetentionDays      int                 `json:"retention_days"`
	TimeZone           string              `json:"time_zone"`
	Bots               string              `json:"bots"`
	KeepTruncatedIP    bool                `json:"keep_truncated_ip"`
	RateLimitPerSecond float64             `json:"rate_limit_per_second"`
	RateLimitBurst     int                 `json:"rate_limit_burst"`
	AllowedProperties  []string            `json:"allowed_properties"`
	Exclude            map[string][]string `json:"exclude"`
	ChildDirected      bool                `json:"child_directed"`
	UmamiWebsiteIDs    []string            `json:"umami_website_ids"`
}

// ViewOf is c as operators see it.
func ViewOf(c registry.Client) View {
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return View{ID: c.ID, Name: c.Name, Domains: nz(c.Domains), WriteKeys: nz(c.WriteKeys),
		APIKeys: len(c.APIKeyHashes), ServerKeys: len(c.ServerKeyHashes),
		RespectDNT: c.RespectDNT, CookieMode: c.CookieMode, RetentionDays: c.RetentionDays, TimeZone: c.TimeZone,
		Bots: c.Bots, KeepTruncatedIP: c.KeepTruncatedIP, RateLimitPerSecond: c.RateLimitPerSecond,
		RateLimitBurst: c.RateLimitBurst, AllowedProperties: nz(c.AllowedProperties),
		Exclude: map[string][]string{
			"ip_ranges": nz(c.Exclude.IPRanges), "hostnames": nz(c.Exclude.Hostnames), "paths": nz(c.Exclude.Paths),
		},
		ChildDirected: c.ChildDirected, UmamiWebsiteIDs: nz(c.UmamiWebsiteIDs)}
}

// Update changes a client's settings.
func (f *File) Update(id string, s Settings) error {
	return f.update(id, func(c *registry.Client) error { s.Apply(c); return nil })
}

func (f *File) update(id string, change func(*registry.Client) error) error {
	return f.edit(func(cs []registry.Client) ([]registry.Client, error) {
		for i := range cs {
			if cs[i].ID == id {
				return cs, change(&cs[i])
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	})
}
