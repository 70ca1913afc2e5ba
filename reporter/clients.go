package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/clientfile"
)

const clientsUsage = `usage: reporter clients [-clients-file FILE] COMMAND [flags]

Edits the client registry file atomically; running services reload it.
The file is also read from ALUMINI_CLIENTS_FILE.

commands:
  list                               print the clients (key hashes counted, not shown)
  add -id ID [settings]              add a client and print its first API key (shown once)
  issue-key -id ID                   add an API key to a client and print it (shown once)
  rotate-key -id ID                  replace all of a client's API keys by a new one (shown once)
  set -id ID [settings]              change settings
  hash-key                           make an operator key; prints the key (once) and the
                                     -operator-key-hash to start the reporter with

settings: -name S -domains a.example,b.example -write-keys k1,k2 -respect-dnt=true|false
          -cookie-mode cookieless|cookie -retention-days N
`

// clientsCommand runs `reporter clients ...` and returns the exit code.
func clientsCommand(args []string, stdout, stderr io.Writer) int {
	top := flag.NewFlagSet("clients", flag.ContinueOnError)
	top.SetOutput(stderr)
	top.Usage = func() { fmt.Fprint(stderr, clientsUsage) }
	path := top.String("clients-file", os.Getenv("ALUMINI_CLIENTS_FILE"), "client registry YAML file")
	if err := top.Parse(args); err != nil {
		return 2
	}
	if top.NArg() == 0 {
		top.Usage()
		return 2
	}
	cmd, rest := top.Arg(0), top.Args()[1:]
	if cmd == "hash-key" {
		key, err := registry.NewAPIKey()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "operator key (shown once): %s\nstart the reporter with: -operator-key-hash=%s\n", key, registry.HashAPIKey(key))
		return 0
	}
	if *path == "" {
		fmt.Fprintln(stderr, "reporter clients: -clients-file (or ALUMINI_CLIENTS_FILE) is required")
		return 2
	}
	f := clientfile.New(*path)

	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "", "client id")
	var s clientfile.Settings
	str := func(name, usage string, dst **string) {
		fs.Func(name, usage, func(v string) error { *dst = &v; return nil })
	}
	list := func(name, usage string, dst **[]string) {
		fs.Func(name, usage, func(v string) error {
			out := []string{}
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
			*dst = &out
			return nil
		})
	}
	str("name", "display name", &s.Name)
	list("domains", "comma-separated domains", &s.Domains)
	list("write-keys", "comma-separated public write keys", &s.WriteKeys)
	str("cookie-mode", "cookieless or cookie", &s.CookieMode)
	fs.Func("respect-dnt", "drop hits with Do Not Track / GPC", func(v string) error {
		b := v == "true"
		if v != "true" && v != "false" {
			return errors.New("want true or false")
		}
		s.RespectDNT = &b
		return nil
	})
	fs.Func("retention-days", "days events are kept; 0 keeps them", func(v string) error {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil {
			return err
		}
		s.RetentionDays = &n
		return nil
	})
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if cmd != "list" && *id == "" {
		fmt.Fprintf(stderr, "reporter clients %s: -id is required\n", cmd)
		return 2
	}

	var err error
	switch cmd {
	case "list":
		var cs []registry.Client
		cs, err = f.List()
		if err == nil {
			type row struct {
				ID            string   `json:"id"`
				Name          string   `json:"name"`
				Domains       []string `json:"domains"`
				APIKeys       int      `json:"api_keys"`
				RespectDNT    bool     `json:"respect_dnt"`
				CookieMode    string   `json:"cookie_mode"`
				RetentionDays int      `json:"retention_days"`
			}
			enc := json.NewEncoder(stdout)
			for _, c := range cs {
				err = errors.Join(err, enc.Encode(row{c.ID, c.Name, c.Domains, len(c.APIKeyHashes), c.RespectDNT, c.CookieMode, c.RetentionDays}))
			}
		}
	case "add":
		c := registry.Client{ID: *id}
		s.Apply(&c)
		var key string
		if key, err = f.Add(c); err == nil {
			fmt.Fprintf(stdout, "client %s added\napi key (shown once, stored hashed): %s\n", *id, key)
		}
	case "issue-key", "rotate-key":
		var key string
		if key, err = f.IssueKey(*id, cmd == "rotate-key"); err == nil {
			fmt.Fprintf(stdout, "api key for %s (shown once, stored hashed): %s\n", *id, key)
			if cmd == "rotate-key" {
				fmt.Fprintln(stdout, "all earlier keys of this client stop working when the services reload the registry")
			}
		}
	case "set":
		if err = f.Update(*id, s); err == nil {
			fmt.Fprintf(stdout, "client %s updated\n", *id)
		}
	default:
		fmt.Fprintf(stderr, "reporter clients: unknown command %q\n\n%s", cmd, clientsUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "reporter clients %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
