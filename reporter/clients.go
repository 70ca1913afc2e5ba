package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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
  hash-key                           make a random key; prints it (once) and its hash, for
                                     -operator-key-hash or a client's -server-key-hashes

settings (every registry field but the id and the API keys; lists are comma-separated,
an empty value empties one; see deploy/clients.example.yaml for their meaning):
  -name S -domains a.example,b.example -write-keys k1,k2 -respect-dnt=true|false
  -cookie-mode cookieless|cookie -retention-days N -time-zone Europe/Berlin
  -bots flag|drop -keep-truncated-ip=true|false -rate-limit-per-second X
  -rate-limit-burst N -server-key-hashes sha256:...,sha256:... -allowed-properties p1,p2
  -exclude-ip-ranges 192.0.2.0/24,198.51.100.7 -exclude-hostnames staging.example
  -exclude-paths /admin/* -child-directed=true|false
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
		fmt.Fprintf(stdout, "key (shown once): %s\nhash: %s\nas the operator key, start the reporter with -operator-key-hash=%s;\nas a client's server key, add the hash with: set -id ID -server-key-hashes %s\n",
			key, registry.HashAPIKey(key), registry.HashAPIKey(key), registry.HashAPIKey(key))
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
	s.Flags(fs)
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
			enc := json.NewEncoder(stdout)
			for _, c := range cs {
				err = errors.Join(err, enc.Encode(clientfile.ViewOf(c)))
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
