package intake

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// The hand-written fast paths of the hot path must give exactly what the
// library code they replace gives.

func TestPlainPageURLIsASubset(t *testing.T) {
	corpus := []string{
		"https://shop.example/", "http://shop.example", "https://shop.example:8443/a/b?c=d&e=f#g",
		"https://bench.example/pricing?utm_source=news", "https://a.example/%E2%82%AC?q=%zz", "https://a.example/%zz",
		"https://a.example/%2", "HTTPS://A.EXAMPLE/", "https://user@a.example/", "https://[::1]:80/", "https://a.example:x/",
		"https://a.example/ space", "https://a.example/\x7f", "https://a.example/é", "ftp://a.example/", "https:///path",
		"https://a_b.example/", "https://a.example/?q=<script>", "https://a.example#frag%41", "https://a.example#%", "https://:80/",
		"http://-/", "https://a.example/[x]", "https://a.example/|",
	}
	// Mostly characters a plain URL may hold, so that many mutants stay
	// plain, and some that it may not.
	alphabet := "aaaZZ00099..--_~:/?#@!$&'()*+,;=%%%%[] <>\"{}|\\^`\x00\x7f\xc3"
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := len(corpus)
	for range 20000 {
		b := []byte(corpus[rng.IntN(seeds)])
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(b) + 1)
			c := alphabet[rng.IntN(len(alphabet))]
			if rng.IntN(2) == 0 && i < len(b) {
				b[i] = c
			} else {
				b = append(b[:i], append([]byte{c}, b[i:]...)...)
			}
		}
		corpus = append(corpus, string(b))
	}
	plain := 0
	for _, s := range corpus {
		u, err := url.Parse(s)
		want := err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
		if plainPageURL(s) {
			plain++
			if !want {
				t.Errorf("plainPageURL(%q) = true; url.Parse = %v, %v refuses it", s, u, err)
			}
		}
		if got := validPageURL(s); got != want {
			t.Errorf("validPageURL(%q) = %v; want %v", s, got, want)
		}
	}
	for _, s := range []string{"https://bench.example/pricing?utm_source=news", "http://localhost:8080/a%20b#top"} {
		if !plainPageURL(s) {
			t.Errorf("plainPageURL(%q) = false; want the fast path for a common URL", s)
		}
	}
	if plain < 500 {
		t.Errorf("only %d of %d URLs took the fast path; the test no longer exercises it", plain, len(corpus))
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain-id", `quo"te\back`, "<a>&b", "tab\tnl\ncr\r\x00\x1f", "€ \u2028\u2029 ok", "bad \xff utf8 \xc3", "\x7f"} {
		want, _ := json.Marshal(s)
		// encoding/json writes an invalid byte as \ufffd up to Go 1.26 and
		// as the replacement character itself from Go 1.27 (the workspace's
		// toolchain); both decode the same, and the fast path keeps the
		// escape. The corpus holds no valid U+FFFD.
		want = bytes.ReplaceAll(want, []byte("\uFFFD"), []byte(`\ufffd`))
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s; want %s", s, got, want)
		}
	}
}

func TestAppendPartitionKeyIsFNVOfVisitor(t *testing.T) {
	old := func(hit *aluminiv1.RawHit) string {
		f := fnv.New64a()
		if hit.CookieId != "" {
			f.Write([]byte(hit.CookieId))
		} else {
			f.Write(hit.Ip)
			f.Write([]byte{0})
			f.Write([]byte(hit.UserAgent))
		}
		return hit.ClientId + ":" + hex.EncodeToString(f.Sum(nil))
	}
	for _, hit := range []*aluminiv1.RawHit{
		{ClientId: "shop", CookieId: "0123456789abcdef0123456789abcdef"},
		{ClientId: "shop", Ip: []byte{192, 0, 2, 1}, UserAgent: "Mozilla/5.0"},
		{ClientId: "blog", Ip: []byte{32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{ClientId: "blog"},
	} {
		if got, want := string(appendPartitionKey(nil, hit)), old(hit); got != want {
			t.Errorf("appendPartitionKey(%v) = %s; want %s", hit, got, want)
		}
		if n := partitionKeySize(hit); n != len(appendPartitionKey(nil, hit)) {
			t.Errorf("partitionKeySize(%v) = %d; want %d", hit, n, len(appendPartitionKey(nil, hit)))
		}
	}
}

func TestNewEventIDIsUUIDv7(t *testing.T) {
	received := time.Date(2026, 11, 25, 14, 3, 0, 123e6, time.UTC)
	r := requestFacts{received: received.UnixMilli(), a: newArena(0)}
	seen := map[string]bool{}
	for range 1000 {
		id := r.newEventID()
		u, err := uuid.Parse(id)
		if err != nil || u.String() != id {
			t.Fatalf("newEventID() = %q: %v; want a canonical UUID", id, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("newEventID() = %s: version %d, variant %v; want 7, RFC 4122", id, u.Version(), u.Variant())
		}
		if sec, nsec := u.Time().UnixTime(); time.Unix(sec, nsec).UnixMilli() != received.UnixMilli() {
			t.Fatalf("newEventID() = %s holds time %v; want %v", id, time.Unix(sec, nsec).UTC(), received)
		}
		if seen[id] {
			t.Fatalf("newEventID() repeated %s", id)
		}
		seen[id] = true
	}
}

// Native properties are kept as a list and encoded from it; they must
// reach Kafka as the same map (a repeated name is refused, see
// TestRefusedAndDroppedEventsNeverReachKafka).
func TestNativePropertiesEncodeAsTheMap(t *testing.T) {
	body := []byte(`{"client_id":"shop","url":"https://shop.example/","properties":{"plan":"pro","seats":3,"n":-1.5e3,"ok":true,"no":false,"gone":null,"long":"` + strings.Repeat("x", 40) + `"}}`)
	h := New(Config{Clients: benchClients(t)})
	items, _, err := h.decodeNative(epEvent, body, time.Now(), newArena(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	hit, props := items[0].hit, items[0].props
	if hit.Properties != nil {
		t.Errorf("hit.Properties = %v; want the native properties only in the list", hit.Properties)
	}
	var got aluminiv1.RawHit
	if err := proto.Unmarshal(appendRawHitProps(nil, hit, props), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"plan": "pro", "seats": "3", "n": "-1.5e3", "ok": "true", "no": "false", "long": strings.Repeat("x", 40)}
	if len(got.Properties) != len(want) {
		t.Errorf("properties = %v; want %v", got.Properties, want)
	}
	for k, v := range want {
		if got.Properties[k] != v {
			t.Errorf("properties[%q] = %q; want %q", k, got.Properties[k], v)
		}
	}
	if n, enc := rawHitSizeHint(hit, props), len(appendRawHitProps(nil, hit, props)); n < enc {
		t.Errorf("rawHitSizeHint = %d; want at least the encoded %d bytes", n, enc)
	}
}

// Strings handed out by an arena never change, whatever is added later.
func TestArenaStringsStay(t *testing.T) {
	a := newArena(8)
	var got []string
	var want []string
	for i := range 2000 {
		s := strings.Repeat(string(rune('a'+i%26)), 1+i%50)
		got = append(got, a.str([]byte(s)))
		want = append(want, s)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("arena string %d = %q; want %q", i, got[i], want[i])
		}
	}
}

// A released arena goes back to its pool and serves the next request of
// its size, and under test its old bytes are overwritten: a string kept
// past its request (see arena) reads as '#'s instead of passing unnoticed.
func TestReleasedArenaIsReusedAndPoisoned(t *testing.T) {
	if !poisonReleased {
		t.Fatal("poisonReleased is off under test")
	}
	a := newArena(3000) // a 4 KiB chunk
	kept := a.str([]byte("visitor-1"))
	props := a.propSlice(1)
	props = append(props, prop{key: a.str([]byte("plan")), value: kept})
	a.release()
	if kept != "#########" {
		t.Errorf("string kept past release = %q; want it overwritten", kept)
	}
	if props[0].key != "" {
		t.Errorf("property kept past release = %q; want it cleared", props[0].key)
	}
	// sync.Pool may drop what it holds at any time (a collection), so
	// reuse is looked for over a few tries.
	reused := false
	for range 10 {
		b := newArena(4096)
		if cap(b.buf) != 4096 || len(b.buf) != 0 || len(b.props) != 0 {
			t.Fatalf("arena for 4096 bytes: chunk %d/%d, %d props; want an empty 4096-byte chunk", len(b.buf), cap(b.buf), len(b.props))
		}
		reused = reused || b == a
		b.release()
		a = b
	}
	if !reused {
		t.Error("a released arena was never handed out again")
	}
}

// Pooled slots come back zeroed: nothing of one request's hits shows up in
// the next one's.
func TestSlotsComeBackEmpty(t *testing.T) {
	h := New(Config{Clients: benchClients(t)})
	full := []byte(`[{"client_id":"shop","event_id":"e1","type":"custom","name":"signup","url":"https://shop.example/a","referrer":"https://r.example/","title":"T","language":"de","screen_width":1,"screen_height":2,"timezone":"Europe/Berlin","user_id":"u","dnt":true,"gpc":true,"properties":{"plan":"pro"}},` +
		`{"client_id":"shop","url":"https://shop.example/b","properties":{"k":"v"}}]`)
	received := time.Now()
	for range 3 {
		items, slots, err := h.decodeNative(epBatch, full, received, newArena(len(full)))
		if err != nil {
			t.Fatal(err)
		}
		if items[0].hit.Name != "signup" || len(items[1].props) != 1 {
			t.Fatalf("decoded %v, %v; want the full batch", items[0].hit, items[1].props)
		}
		putSlots(slots)
	}
	bare := []byte(`[{"client_id":"blog","url":"https://blog.example/"},{"client_id":"blog","url":"https://blog.example/2"}]`)
	items, slots, err := h.decodeNative(epBatch, bare, received, newArena(len(bare)))
	if err != nil {
		t.Fatal(err)
	}
	defer putSlots(slots)
	for i, it := range items {
		want := &aluminiv1.RawHit{Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW, Url: it.hit.Url, Consent: &aluminiv1.Consent{}}
		if !proto.Equal(it.hit, want) || it.props != nil || it.produce || it.skip != "" || it.anonymousID != "" || it.ip.IsValid() {
			t.Errorf("hit %d after reuse = %v (props %v); want only %v", i, it.hit, it.props, want)
		}
	}
}
