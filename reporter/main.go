// Command reporter serves per-client aggregates of the events stored in
// ClickHouse over an HTTP API authenticated by the clients' secret API keys.
package main

import (
	"os"

	"github.com/aluminiapp/pipeline/lib/service"
)

func main() {
	var cfg config
	os.Exit(service.Main("reporter", &cfg, os.Args[1:], cfg.run))
}
