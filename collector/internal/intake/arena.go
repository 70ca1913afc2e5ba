package intake

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// arena holds the strings and properties of one request's events. The
// native decoder copies every string out of the pooled JSON parser; one
// buffer per request instead of one allocation per field takes the
// collector's allocations per event from about a dozen to about one.
//
// Strings point into the arena's chunks. A chunk is only appended to, and
// never past its capacity (a full chunk is replaced by a new one, not
// grown), so bytes behind a string handed out never change while the
// request runs: that is what makes unsafe.String sound here. Once the
// request's hits are encoded and its answer is written (see decoded),
// release hands the chunks back for the next request.
// Pooling them matters: fresh chunks were 90 % of the bytes the collector
// allocated (about 33 KB of a 100-event batch request), so a garbage
// collection every quarter second at 2,500 batch requests/s, and on one
// core each mark phase made the requests of its 10-20 ms slow: that was
// most of the batch p99. So nothing may keep an arena string past the
// release, which comes before the wait for Kafka: whatever outlives it
// (rate-limit keys, caches, log fields written later) copies first. Under
// test, release overwrites the bytes, so that a string kept by mistake
// reads as garbage in the tests.
type arena struct {
	buf   []byte
	props []prop
}

// prop is one custom property.
type prop struct{ key, value string }

// arenaPools hold released arenas by the capacity of their byte chunk,
// up to 1 MiB (the default body limit).
var arenaPools = make(sizePools[arena], 21)

// poisonReleased is set under test: see arena.
var poisonReleased = testing.Testing()

// newArena returns an arena whose first chunk takes at least n bytes. The
// body's length is about what all its strings take (JSON unescaping
// shortens them); when it is not, more chunks follow.
func newArena(n int) *arena {
	a, c := arenaPools.get(max(n, 64))
	if a == nil {
		a = &arena{buf: make([]byte, 0, c)}
	}
	return a
}

// release hands the arena back once nothing refers to its strings any
// more: the request's hits are encoded and its answer is written. It
// keeps the current chunks; earlier ones, replaced when full, go to the
// garbage collector.
func (a *arena) release() {
	if poisonReleased {
		b := a.buf[:cap(a.buf)]
		for i := range b {
			b[i] = '#'
		}
	}
	clear(a.props[:cap(a.props)]) // property strings may point into chunks dropped
	a.props = a.props[:0]
	a.buf = a.buf[:0]
	arenaPools.put(a, cap(a.buf))
}

// reserve makes room for n more bytes in the current chunk.
func (a *arena) reserve(n int) {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(n, 4096))
	}
}

// str copies b into the arena.
func (a *arena) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	a.reserve(len(b))
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return unsafe.String(&a.buf[start], len(b))
}

// bytes copies b into the arena; the result's capacity ends with it.
func (a *arena) bytes(b []byte) []byte {
	a.reserve(len(b))
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// header copies a header value into a raw-hit field: cut to max bytes,
// made valid UTF-8, which protobuf strings must be (a consumer's decoder
// refuses anything else), and without NUL characters (see cleanJSONText).
// Headers are the visitor's to send, so they are repaired rather than
// refused.
func (a *arena) header(b []byte, max int) string {
	if len(b) > max {
		b = b[:max]
	}
	if utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
		return a.str(b)
	}
	return withoutNUL(strings.ToValidUTF8(string(b), "\uFFFD"))
}

// number copies a JSON number's text as it was sent.
func (a *arena) number(v *fastjson.Value) string {
	a.reserve(64)
	start := len(a.buf)
	out := v.MarshalTo(a.buf) // writes past len only: no string refers there
	if unsafe.SliceData(out) != unsafe.SliceData(a.buf) {
		// Longer than the room left: out is a new array of its own.
		return string(out[start:])
	}
	a.buf = out
	if len(out) == start {
		return ""
	}
	return unsafe.String(&a.buf[start], len(out)-start)
}

// propSlice returns room for n properties. Chunks grow as a request
// proves to have many properties: one event's stay small.
func (a *arena) propSlice(n int) []prop {
	if cap(a.props)-len(a.props) < n {
		a.props = make([]prop, 0, max(n, min(2*cap(a.props), 256)))
	}
	start := len(a.props)
	a.props = a.props[:start+n]
	return a.props[start : start : start+n]
}
