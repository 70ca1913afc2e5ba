package tracker

import (
	"bytes"
	"compress/gzip"
	"testing"
)

func TestScriptIsSmallAndConfigured(t *testing.T) {
	s := Script("/stats/e")
	if !bytes.Contains(s, []byte(`'/stats/e'`)) || bytes.Contains(s, []byte("__EVENT_PATH__")) {
		t.Fatalf("Script(/stats/e) does not hold the configured path")
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() >= 2048 {
		t.Errorf("t.js is %d bytes gzipped; the limit is 2048", buf.Len())
	}
	t.Logf("t.js: %d bytes, %d gzipped", len(s), buf.Len())
}
