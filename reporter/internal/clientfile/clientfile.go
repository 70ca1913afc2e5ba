// Package clientfile edits the client registry YAML for operators: it adds
// clients, issues and rotates API keys and changes settings, validating
// every new version with registry.Parse and replacing the file atomically,
// so the services' reloaders only ever see a whole, valid registry.
package clientfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// Settings are the client settings an operator may change; nil fields stay
// as they are.
type Settings struct {
	Name          *string   `json:"name,omitempty"`
	Domains       *[]string `json:"domains,omitempty"`
	WriteKeys     *[]string `json:"write_keys,omitempty"`
	RespectDNT    *bool     `json:"respect_dnt,omitempty"`
	CookieMode    *string   `json:"cookie_mode,omitempty"`
	RetentionDays *int      `json:"retention_days,omitempty"`
}

// Apply sets the given settings on c.
func (s Settings) Apply(c *registry.Client) {
	if s.Name != nil {
		c.Name = *s.Name
	}
	if s.Domains != nil {
		c.Domains = *s.Domains
	}
	if s.WriteKeys != nil {
		c.WriteKeys = *s.WriteKeys
	}
	if s.RespectDNT != nil {
		c.RespectDNT = *s.RespectDNT
	}
	if s.CookieMode != nil {
		c.CookieMode = *s.CookieMode
	}
	if s.RetentionDays != nil {
		c.RetentionDays = *s.RetentionDays
	}
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
