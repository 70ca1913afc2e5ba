package visitor

import (
	"testing"
	"time"
)

func TestIDsAreScopedToClientAndDay(t *testing.T) {
	h := New([]byte("0123456789abcdef0123456789abcdef"))
	ip, ua := []byte{203, 0, 113, 7}, "Mozilla/5.0 Firefox/133.0"
	day := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

	a := h.Cookieless("shop", ip, ua, day)
	if again := h.Cookieless("shop", ip, ua, day.Add(10*time.Hour)); again != a {
		t.Errorf("same visitor later that day: %x; want %x", again, a)
	}
	for name, other := range map[string]uint64{
		"other client":     h.Cookieless("blog", ip, ua, day),
		"next day":         h.Cookieless("shop", ip, ua, day.Add(24*time.Hour)),
		"other user agent": h.Cookieless("shop", ip, ua+" ", day),
		"other secret":     New([]byte("another secret of 32 bytes......")).Cookieless("shop", ip, ua, day),
	} {
		if other == a {
			t.Errorf("%s: id %x equals the original; want an unrelated id", name, other)
		}
	}
	if h.Cookie("shop", "abc") == h.Cookie("blog", "abc") {
		t.Error("one cookie id on two clients gives the same visitor id; want unrelated ids")
	}
	if h.Cookie("sho", "pabc") == h.Cookie("shop", "abc") {
		t.Error("ids of differently split inputs collide; parts must be length-prefixed")
	}
}
