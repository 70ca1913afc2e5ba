// Package redact removes fields from encoded protobuf messages without
// decoding them, so that a record that does not decode can still be
// stripped of what must not be kept (a raw hit's IP address in a dead
// letter, say).
package redact

import "google.golang.org/protobuf/encoding/protowire"

// Without returns b without the top-level fields numbered nums. It walks
// the wire format only, so it works on messages that proto.Unmarshal
// refuses (invalid UTF-8, a wrong type for a known field). Where the wire
// format itself breaks, the rest of b is dropped: its bytes cannot be told
// apart, and any of them could belong to a removed field; complete is then
// false. b is not changed.
func Without(b []byte, nums ...protowire.Number) (out []byte, complete bool) {
	out = make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return out, false
		}
		if !contains(nums, num) {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out, true
}

func contains(nums []protowire.Number, num protowire.Number) bool {
	for _, x := range nums {
		if x == num {
			return true
		}
	}
	return false
}
