// Command reporter serves per-client reports of the events stored in
// ClickHouse over an HTTP API authenticated by the clients' secret API
// keys, with a web dashboard; `reporter clients ...` edits the client
// registry for operators.
package main

import (
	"os"

	"github.com/aluminiapp/pipeline/lib/service"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "clients" {
		os.Exit(clientsCommand(os.Args[2:], os.Stdout, os.Stderr))
	}
	var cfg config
	os.Exit(service.Main("reporter", &cfg, os.Args[1:], cfg.run))
}
