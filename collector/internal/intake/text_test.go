package intake

import (
	"encoding/base64"
	"testing"
)

func TestCleanJSONText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":"plain"}`, `{"a":"plain"}`},
		{"{\"a\":\"x\x00y\"}\x00", `{"a":"xy"}`},
		{`{"a":"x\u0000y"}`, `{"a":"xy"}`},
		{`{"a\u0000":1}`, `{"a":1}`},
		{`{"a":"\ud800"}`, `{"a":"\ufffd"}`},
		{`{"a":"\uDC00x"}`, `{"a":"\ufffdx"}`},
		{`{"a":"\ud800\u0041"}`, `{"a":"\ufffd\u0041"}`},
		{`{"a":"\ud800\u0000"}`, `{"a":"\ufffd"}`},
		{`{"a":"\ud83d\ude00"}`, `{"a":"\ud83d\ude00"}`},       // a pair: 😀
		{`{"a":"\\u0000 \\ud800"}`, `{"a":"\\u0000 \\ud800"}`}, // backslashes, then text
		{`{"a":"\\\u0000"}`, `{"a":"\\"}`},
		{`{"a":"\/\n\"\ud800`, `{"a":"\/\n\"\ufffd`}, // cut short: left to the parser
		{`\u12`, `\u12`},
		{`\`, `\`},
	} {
		if got := string(cleanJSONText([]byte(tc.in))); got != tc.want {
			t.Errorf("cleanJSONText(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// TestTextFieldsAreCleaned: NUL characters are removed from what every
// endpoint stores, and lone surrogates become U+FFFD; the events are kept.
func TestTextFieldsAreCleaned(t *testing.T) {
	f := start(t)
	for _, body := range []string{
		`{"client_id":"blog","event_id":"n1","url":"https://blog.example/","title":"Pri\u0000cing \ud800","properties":{"pl\u0000an":"pro\u0000","emoji":"\ud83d\ude00"}}`,
		"{\"client_id\":\"blog\",\"event_id\":\"n2\",\"url\":\"https://blog.example/\",\"title\":\"raw\x00nul\"}",
	} {
		if r := send(t, "POST", f.url+"/api/event", []byte(body), nil); r.status != 202 {
			t.Fatalf("POST %q = %d %s; want 202", body, r.status, r.body)
		}
	}
	// A property name of nothing but NUL is no name at all.
	if r := send(t, "POST", f.url+"/api/event", []byte(`{"client_id":"blog","url":"https://blog.example/","properties":{"\u0000":"x"}}`), nil); r.status != 400 {
		t.Errorf("property named NUL = %d %s; want 400", r.status, r.body)
	}
	auth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("wk_shop:"))}
	if r := send(t, "POST", f.url+"/v1/track", []byte(`{"messageId":"s1","userId":"u\u0000","event":"Sign\u0000up \udc00","properties":{"k":"v\u0000"}}`), auth); r.status != 200 {
		t.Fatalf("Segment track = %d %s; want 200", r.status, r.body)
	}
	if r := send(t, "GET", f.url+"/p.gif?client_id=blog&event_id=p1&url=https://blog.example/&title=a%00b&prop.k%00=v%00", nil, nil); r.status != 200 {
		t.Fatalf("pixel = %d %s; want 200", r.status, r.body)
	}
	hits := byEventID(readHits(t, f, 4))
	n1, n2, s1, p1 := hits["n1"], hits["n2"], hits["s1"], hits["p1"]
	if n1.Title != "Pricing \uFFFD" || n1.Properties["plan"] != "pro" || n1.Properties["emoji"] != "😀" {
		t.Errorf("native event: title %q, properties %v; want \"Pricing \\uFFFD\", plan=pro, emoji=😀", n1.Title, n1.Properties)
	}
	if n2.Title != "rawnul" {
		t.Errorf("raw NUL: title %q; want \"rawnul\"", n2.Title)
	}
	if s1.Name != "Signup \uFFFD" || s1.UserId != "u" || s1.Properties["k"] != "v" {
		t.Errorf("Segment: name %q, user %q, properties %v; want \"Signup \\uFFFD\", \"u\", k=v", s1.Name, s1.UserId, s1.Properties)
	}
	if p1.Title != "ab" || p1.Properties["k"] != "v" {
		t.Errorf("pixel: title %q, properties %v; want \"ab\", k=v", p1.Title, p1.Properties)
	}
}
