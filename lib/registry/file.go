package registry

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/aluminiapp/pipeline/lib/periodic"
)

// File is a Registry read from a YAML file and reloaded when it changes.
// A changed file that does not validate, or is empty, is refused with a log
// line, and the last good version stays in force, so a typo or a file
// caught in the middle of being written never takes the service down.
type File struct {
	path    string
	current atomic.Pointer[index]
	// The fields below belong to the goroutine that reloads (OpenFile,
	// then Watch).
	raw      []byte // content of the version in force
	pending  []byte // changed content seen on the last poll, not yet applied
	rejected []byte // content last refused, so it is logged once
	versions uint64
}

// ErrEmpty is the error for a registry that lists no clients: what a
// reader sees between an editor truncating the file and writing it again,
// and never a useful registry (every hit would be refused).
var ErrEmpty = errors.New("the registry lists no clients")

// fileFormat is the YAML document: a list of clients.
type fileFormat struct {
	Clients []Client `yaml:"clients"`
}

// OpenFile reads and validates the registry at path.
func OpenFile(path string) (*File, error) {
	f := &File{path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading client registry: %w", err)
	}
	if err := f.apply(data); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse validates a registry document and returns its clients.
func Parse(data []byte) ([]Client, error) {
	ix, err := parse(data)
	if err != nil {
		return nil, err
	}
	return ix.clients, nil
}

func parse(data []byte) (*index, error) {
	var doc fileFormat
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt setting must fail loudly, not be ignored.
	// io.EOF: no YAML document at all (nothing, or only comments).
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(doc.Clients) == 0 {
		return nil, ErrEmpty
	}
	return newIndex(doc.Clients)
}

// reload reads the file and swaps the index in when the content changed
// and then stayed the same for one more poll. Writers that truncate and
// rewrite in place (editors, shell redirections, os.WriteFile) leave the
// file empty or cut short for a moment; a cut-short YAML file can parse, and
// would silently lose the clients after the cut. Waiting one poll for the
// content to settle keeps such a moment from ever being applied; renaming a
// finished file into place (as Kubernetes does) is safe without it.
func (f *File) reload() (bool, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("reading client registry: %w", err)
	}
	if bytes.Equal(data, f.raw) {
		f.pending, f.rejected = nil, nil // a bad edit made again is logged again
		return false, nil
	}
	if !bytes.Equal(data, f.pending) {
		f.pending = data
		return false, nil
	}
	f.pending = nil
	if bytes.Equal(data, f.rejected) {
		return false, nil // refused and logged already.
	}
	if err := f.apply(data); err != nil {
		f.rejected = data
		return false, err
	}
	return true, nil
}

// apply validates data and puts it in force.
func (f *File) apply(data []byte) error {
	ix, err := parse(data)
	if err != nil {
		return fmt.Errorf("client registry %s: %w", f.path, err)
	}
	f.versions++
	ix.version = f.versions
	f.raw, f.rejected = data, nil
	f.current.Store(ix)
	return nil
}

// Watch reloads the file every interval until ctx ends. Polling, rather than
// file-system notifications, also sees the symlink swaps by which
// Kubernetes updates mounted ConfigMaps and Secrets.
func (f *File) Watch(ctx context.Context, interval time.Duration, log *zap.Logger) {
	periodic.Run(ctx, interval, func() {
		changed, err := f.reload()
		switch {
		case err != nil:
			log.Error("client registry not reloaded; keeping the previous version", zap.Error(err))
		case changed:
			log.Info("client registry reloaded", zap.String("path", f.path), zap.Int("clients", len(f.current.Load().byID)))
		}
	})
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

// ByServerKey returns the client that owns a secret server key.
func (f *File) ByServerKey(key string) (*Client, error) {
	if key == "" {
		return nil, ErrNotFound
	}
	if c, ok := f.current.Load().byServerKey[HashAPIKey(key)]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

// ByDomain returns the one client whose domains list domain,
// case-insensitively.
func (f *File) ByDomain(domain string) (*Client, error) {
	c, ok := f.current.Load().byDomain[strings.ToLower(domain)]
	switch {
	case !ok:
		return nil, ErrNotFound
	case c == nil:
		return nil, ErrAmbiguous
	}
	return c, nil
}

// ByUmamiWebsite returns the client of an Umami website id.
func (f *File) ByUmamiWebsite(id string) (*Client, error) {
	if c, ok := f.current.Load().byUmami[id]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

// Version is 1 for the file as first read and grows by one with each
// reload that changed it.
func (f *File) Version() uint64 { return f.current.Load().version }

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
