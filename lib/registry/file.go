package registry

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
)

// File is a Registry read from a YAML file and reloaded when it changes.
// A changed file that does not validate is refused with a log line, and the
// last good version stays in force, so a typo never takes the service down.
type File struct {
	path    string
	current atomic.Pointer[index]
	raw     []byte
}

// fileFormat is the YAML document: a list of clients.
type fileFormat struct {
	Clients []Client `yaml:"clients"`
}

// OpenFile reads and validates the registry at path.
func OpenFile(path string) (*File, error) {
	f := &File{path: path}
	if _, err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse validates a registry document and returns its clients.
func Parse(data []byte) ([]Client, error) {
	var doc fileFormat
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt setting must fail loudly, not be ignored.
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if _, err := newIndex(doc.Clients); err != nil {
		return nil, err
	}
	return doc.Clients, nil
}

// reload reads the file and swaps the index in when the content changed.
func (f *File) reload() (bool, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("reading client registry: %w", err)
	}
	if f.current.Load() != nil && bytes.Equal(data, f.raw) {
		return false, nil
	}
	clients, err := Parse(data)
	if err != nil {
		return false, fmt.Errorf("client registry %s: %w", f.path, err)
	}
	ix, err := newIndex(clients)
	if err != nil {
		return false, fmt.Errorf("client registry %s: %w", f.path, err)
	}
	f.raw = data
	f.current.Store(ix)
	return true, nil
}

// Watch reloads the file every interval until ctx ends. Polling, rather than
// file-system notifications, also sees the symlink swaps by which
// Kubernetes updates mounted ConfigMaps and Secrets.
func (f *File) Watch(ctx context.Context, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := f.reload()
			switch {
			case err != nil:
				log.Error("client registry not reloaded; keeping the previous version", zap.Error(err))
			case changed:
				log.Info("client registry reloaded", zap.String("path", f.path), zap.Int("clients", len(f.current.Load().byID)))
			}
		}
	}
}

// ByID returns the client with the given id.
func (f *File) ByID(id string) (*Client, error) {
	if c, ok := f.current.Load().byID[id]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

// ByWriteKey returns the client that owns a public write key.
func (f *File) ByWriteKey(key string) (*Client, error) {
	if c, ok := f.current.Load().byWriteKey[key]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

// ByAPIKey returns the client that owns a secret API key.
func (f *File) ByAPIKey(key string) (*Client, error) {
	if c, ok := f.current.Load().byAPIHash[HashAPIKey(key)]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

// FileConfig is how a service finds its registry file.
type FileConfig struct {
	Path           string
	ReloadInterval time.Duration
}

// RegisterFlags adds -clients-file and -clients-reload-interval.
func (c *FileConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Path, "clients-file", "", "client registry YAML file, reloaded when it changes (required)")
	fs.DurationVar(&c.ReloadInterval, "clients-reload-interval", 2*time.Second, "how often the client registry file is checked for changes")
}

// Validate reports a missing file name or a bad interval.
func (c *FileConfig) Validate() error {
	if c.Path == "" {
		return errors.New("clients-file is required: the client registry YAML (see deploy/clients.example.yaml)")
	}
	if c.ReloadInterval <= 0 {
		return errors.New("clients-reload-interval must be positive")
	}
	return nil
}

// Open reads the registry and keeps reloading it until ctx ends.
func (c *FileConfig) Open(ctx context.Context, log *zap.Logger) (*File, error) {
	f, err := OpenFile(c.Path)
	if err != nil {
		return nil, err
	}
	go f.Watch(ctx, c.ReloadInterval, log)
	return f, nil
}
