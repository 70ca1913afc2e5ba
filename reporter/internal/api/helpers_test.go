package api

import (
	"io"
	"os"
	"strings"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func readFile(t interface {
	Helper()
	Fatal(...any)
}, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
