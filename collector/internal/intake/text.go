package intake

import (
	"bytes"
	"strings"
)

// cleanJSONText makes a JSON body's text fields safe to store, in place,
// before it is parsed, and returns the (possibly shorter) text:
//
//   - NUL characters are removed, raw (0x00, which JSON does not allow in
//     a string anyway) and escaped (\u0000). Text with NULs is cut short by
//     C-string tools and terminals downstream; a real browser's title with
//     one is still a page view, so the character goes, not the event.
//   - An escaped UTF-16 surrogate without its pair (\ud800 alone) becomes
//     \ufffd, the replacement character, as encoding/json decodes it:
//     fastjson keeps such an escape as its six literal characters.
//
// Escaped backslashes are skipped as pairs, so the text \\u0000 (a
// backslash and "u0000") is left alone. Anything that is not valid JSON is
// left for the parser to refuse.
func cleanJSONText(b []byte) []byte {
	if bytes.IndexByte(b, '\\') < 0 && bytes.IndexByte(b, 0) < 0 {
		return b // nearly every body: t.js escapes nothing in a URL or title
	}
	w := 0
	for r := 0; r < len(b); {
		c := b[r]
		if c == 0 {
			r++
			continue
		}
		if c != '\\' || r+1 >= len(b) {
			b[w] = c
			w, r = w+1, r+1
			continue
		}
		n := 2 // an escape: copied as it is unless it is \u below
		if b[r+1] == 'u' {
			if x, ok := hex4(b[r+2:]); ok {
				n = 6
				switch {
				case x == 0:
					r += 6
					continue
				case x >= 0xd800 && x < 0xdc00: // high surrogate: its low one must follow
					if r+12 <= len(b) && b[r+6] == '\\' && b[r+7] == 'u' {
						if y, ok := hex4(b[r+8:]); ok && y >= 0xdc00 && y < 0xe000 {
							n = 12
							break
						}
					}
					w += copy(b[w:], `\ufffd`)
					r += 6
					continue
				case x >= 0xdc00 && x < 0xe000: // low surrogate alone
					w += copy(b[w:], `\ufffd`)
					r += 6
					continue
				}
			}
		}
		w += copy(b[w:], b[r:r+n])
		r += n
	}
	return b[:w]
}

// hex4 reads four hex digits.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var x rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		x = x<<4 | rune(c)
	}
	return x, true
}

// withoutNUL removes NUL characters from text that does not come as JSON
// (query strings, headers); see cleanJSONText. No copy when there is none.
func withoutNUL(s string) string {
	return strings.ReplaceAll(s, "\x00", "")
}
