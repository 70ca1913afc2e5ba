// Package tracker holds t.js, the browser script that sends page views and
// custom events to the collector.
package tracker

import (
	"bytes"
	_ "embed"
)

//go:embed t.js
var source []byte

// Script is t.js with eventPath as the default endpoint, resolved against
// the script's own URL, so a site that serves the collector under its own
// domain and paths needs no extra setting on the page.
func Script(eventPath string) []byte {
	return bytes.ReplaceAll(source, []byte("__EVENT_PATH__"), []byte(eventPath))
}
