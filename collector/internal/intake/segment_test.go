package intake

import (
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// docPayload reads a Segment documentation example and moves its 2012
// dates to yesterday, within the collector's 72-hour window.
func docPayload(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "segment", name))
	if err != nil {
		t.Fatal(err)
	}
	yesterday := time.Now().UTC().Add(-24 * time.Hour).Format("2006-01-02")
	return []byte(strings.ReplaceAll(string(b), "2012-12-02", yesterday))
}

func basic(key string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))}
}

func TestSegmentDocumentationPayloads(t *testing.T) {
	f := start(t)
	for _, tc := range []struct{ path, file string }{
		{"/v1/identify", "identify.json"},
		{"/v1/track", "track.json"},
		{"/v1/page", "page.json"},
		{"/v1/screen", "screen.json"},
		{"/v1/batch", "batch.json"},
	} {
		r := send(t, "POST", f.url+tc.path, docPayload(t, tc.file), basic("wk_shop"))
		if r.status != 200 || r.body != `{"success":true}` {
			t.Fatalf("POST %s (%s) = %d %s; want 200 {\"success\":true}", tc.path, tc.file, r.status, r.body)
		}
	}
	hits := readHits(t, f, 8)
	var identify, track, page, screen, batchTrack, batchPage int
	for _, h := range hits {
		if h.ClientId != "shop" || h.EventId == "" || h.SentAtMs == 0 {
			t.Errorf("hit %v: want one of shop with an event id and the sender's timestamp", h)
		}
		// context.ip comes from a public write key here: never believed.
		if ip := net.IP(h.Ip).String(); ip != "127.0.0.1" {
			t.Errorf("hit %s has IP %s; want the request's, since a public write key may not set context.ip", h.Name, ip)
		}
		if _, ok := h.Properties["email"]; ok {
			t.Errorf("hit %v holds an e-mail address from traits; traits must not be stored", h)
		}
		switch {
		case h.Type == aluminiv1.EventType_EVENT_TYPE_IDENTIFY:
			identify++
			if h.UserId != "019mr8mf4r" && h.UserId != "971mj8mk7p" || len(h.Properties) != 0 {
				t.Errorf("identify hit %v; want a documented user id and no traits", h)
			}
		case h.Name == "Item Purchased":
			track++
			if h.Type != aluminiv1.EventType_EVENT_TYPE_CUSTOM || h.UserId != "019mr8mf4r" || h.Properties["revenue"] != "14.99" || h.Properties["name"] != "Leap to Conclusions Mat" {
				t.Errorf("track hit %v; want custom event with the documented properties", h)
			}
		case h.Name == "Song Played":
			batchTrack++
			if h.Properties["artist"] != "Dierks Bentley" {
				t.Errorf("batch track hit %v; want artist Dierks Bentley", h)
			}
		case h.Name == "Home":
			batchPage++
			if h.Type != aluminiv1.EventType_EVENT_TYPE_PAGEVIEW || h.Url != "http://www.example.com" || len(h.Properties) != 0 {
				t.Errorf("batch page hit %v; want a page view of http://www.example.com", h)
			}
		case h.Name == "Tracking HTTP API" && h.Type == aluminiv1.EventType_EVENT_TYPE_PAGEVIEW:
			if page == 0 {
				page++
			} else {
				screen++
			}
		default:
			t.Errorf("unexpected hit %v", h)
		}
	}
	if identify != 3 || track != 1 || page != 1 || screen != 1 || batchTrack != 1 || batchPage != 1 {
		t.Errorf("identify, track, page, screen, batch track, batch page = %d %d %d %d %d %d; want 3 1 1 1 1 1", identify, track, page, screen, batchTrack, batchPage)
	}
}

func TestSegmentCommonFieldsAndServerKey(t *testing.T) {
	f := start(t)
	body, err := os.ReadFile(filepath.Join("testdata", "segment", "common-fields-track.json"))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	// The documented 2015 timestamp passes: sentAt corrects the sender's
	// clock, as Segment does, to the arrival time plus 324 ms.
	if r := send(t, "POST", f.url+"/v1/track", body, basic(serverKey)); r.status != 200 {
		t.Fatalf("POST /v1/track with the server key = %d %s; want 200", r.status, r.body)
	}
	h := readHits(t, f, 1)[0]
	if h.EventId != "022bb90c-bbac-11e4-8dfc-aa07a5b093db" {
		t.Errorf("event id = %q; want the messageId", h.EventId)
	}
	if ip := net.IP(h.Ip).String(); ip != "8.8.8.8" {
		t.Errorf("IP = %s; want context.ip 8.8.8.8 from an authenticated server send", ip)
	}
	if !strings.Contains(h.UserAgent, "iPhone OS 9_1") || h.Url != "https://segment.com/academy/" || h.Title != "Analytics Academy" ||
		h.Language != "en-US" || h.Timezone != "Europe/Amsterdam" || h.ScreenWidth != 320 || h.ScreenHeight != 568 ||
		h.UserId != "97980cfea0067" || h.Name != "Course Clicked" || h.Properties["title"] != "Intro to Analytics" || h.ClientId != "shop" {
		t.Errorf("hit = %v; want the documented context mapped onto the raw hit", h)
	}
	if skew := time.UnixMilli(h.SentAtMs).Sub(before); skew < 300*time.Millisecond || skew > 5*time.Second {
		t.Errorf("corrected timestamp is %v after the request; want about 324ms", skew)
	}
}

func TestSegmentRefusals(t *testing.T) {
	f := start(t)
	track := []byte(`{"userId":"u1","event":"E"}`)
	for _, tc := range []struct {
		name, path string
		body       []byte
		headers    map[string]string
		status     int
		message    string
	}{
		{"no write key", "/v1/track", track, nil, 401, `{"error":"write key required: send it as the HTTP Basic user name"}`},
		{"unknown write key", "/v1/track", track, basic("wk_nobody"), 401, `{"error":"unknown write key"}`},
		{"bearer auth", "/v1/track", track, map[string]string{"Authorization": "Bearer x"}, 401, `{"error":"Authorization must be HTTP Basic with the write key as user name"}`},
		{"track without event", "/v1/track", []byte(`{"userId":"u1"}`), basic("wk_shop"), 400, `{"error":"event is required for a track call"}`},
		{"no user", "/v1/track", []byte(`{"event":"E"}`), basic("wk_shop"), 400, `{"error":"userId or anonymousId is required"}`},
		{"identify anonymous", "/v1/identify", []byte(`{"anonymousId":"a1"}`), basic("wk_shop"), 400, `{"error":"userId is required for an identify call"}`},
		{"documented 2012 timestamp", "/v1/page", mustRead(t, "page.json"), basic("wk_shop"), 400, `behind the server's clock`},
		{"batch names the message", "/v1/batch", []byte(`{"batch":[{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u"}]}`), basic("wk_shop"), 400, `{"error":"message 1: event is required for a track call"}`},
		{"messageId twice", "/v1/batch", []byte(`{"batch":[{"type":"track","userId":"u","event":"E","messageId":"m1","messageId":"m2"}]}`), basic("wk_shop"), 400, `{"error":"malformed JSON: field \"/batch/0/messageId\" appears twice in one object"}`},
		{"writeKey twice", "/v1/track", []byte(`{"userId":"u","event":"E","writeKey":"wk_shop","writeKey":"wk_blog"}`), nil, 400, `field \"/writeKey\" appears twice`},
		{"long user agent", "/v1/track", []byte(`{"userId":"u","event":"E","context":{"userAgent":"` + strings.Repeat("u", 3000) + `"}}`), basic("wk_shop"), 400, `{"error":"context.userAgent is 3000 bytes long; the limit is 2048"}`},
	} {
		r := send(t, "POST", f.url+tc.path, tc.body, tc.headers)
		if r.status != tc.status || !strings.Contains(r.body, tc.message) {
			t.Errorf("%s: POST %s = %d %s; want %d with %s", tc.name, tc.path, r.status, r.body, tc.status, tc.message)
		}
		if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	// Valid Segment calls Alumini does not store are answered as success.
	if r := send(t, "POST", f.url+"/v1/batch", []byte(`{"batch":[{"type":"alias","userId":"u","previousId":"p"}]}`), basic("wk_shop")); r.status != 200 {
		t.Errorf("alias in a batch = %d %s; want 200", r.status, r.body)
	}
	assertEmpty(t, f)
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "segment", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
