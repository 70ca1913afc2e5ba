package redact_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
	"github.com/aluminiapp/pipeline/proto/redact"
)

var ip = []byte{203, 0, 113, 77}

// undecodable is a raw hit in valid wire format that proto.Unmarshal
// refuses: its URL is not UTF-8. Its IP field comes twice (a repeated
// scalar field is legal on the wire; the last one wins).
func undecodable(t *testing.T) []byte {
	t.Helper()
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "shop")
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendBytes(b, ip)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("https://shop.example/\xff"))
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendBytes(b, ip)
	if err := proto.Unmarshal(b, &aluminiv1.RawHit{}); err == nil {
		t.Fatal("the test hit decodes; want one that proto.Unmarshal refuses")
	}
	return b
}

func TestWithoutDropsTheFieldFromAnUndecodableMessage(t *testing.T) {
	in := undecodable(t)
	orig := bytes.Clone(in)
	out, complete := redact.Without(in, 9)
	if !complete {
		t.Fatal("Without(valid wire format) says incomplete")
	}
	if bytes.Contains(out, ip) {
		t.Errorf("Without(hit, 9) = %x; still holds the IP %x", out, ip)
	}
	if !bytes.Equal(in, orig) {
		t.Error("Without changed its input")
	}
	// Everything else is kept, byte for byte.
	var want []byte
	want = protowire.AppendTag(want, 1, protowire.BytesType)
	want = protowire.AppendString(want, "shop")
	want = protowire.AppendTag(want, 5, protowire.BytesType)
	want = protowire.AppendBytes(want, []byte("https://shop.example/\xff"))
	if !bytes.Equal(out, want) {
		t.Errorf("Without(hit, 9) = %x; want %x", out, want)
	}
}

func TestWithoutKeepsADecodableMessageIntact(t *testing.T) {
	hit := &aluminiv1.RawHit{ClientId: "shop", Url: "https://shop.example/", Ip: ip, Properties: map[string]string{"plan": "pro"}}
	in, err := proto.Marshal(hit)
	if err != nil {
		t.Fatal(err)
	}
	out, complete := redact.Without(in, 9)
	var got aluminiv1.RawHit
	if err := proto.Unmarshal(out, &got); err != nil || !complete {
		t.Fatalf("Without(hit) does not decode: %v (complete %v)", err, complete)
	}
	hit.Ip = nil
	if !proto.Equal(&got, hit) {
		t.Errorf("Without(hit, 9) = %v; want %v", &got, hit)
	}
}

func TestWithoutDropsABrokenTail(t *testing.T) {
	in := undecodable(t)
	// A length prefix that runs past the end: the wire format breaks here,
	// and the IP bytes after it cannot be told from anything else.
	broken := protowire.AppendTag(bytes.Clone(in[:6]), 7, protowire.BytesType)
	broken = protowire.AppendVarint(broken, 200)
	broken = append(broken, ip...)
	out, complete := redact.Without(broken, 9)
	if complete {
		t.Error("Without(broken wire format) says complete")
	}
	if bytes.Contains(out, ip) {
		t.Errorf("Without(broken, 9) = %x; still holds the IP", out)
	}
	if !bytes.Equal(out, in[:6]) {
		t.Errorf("Without(broken, 9) = %x; want the intact prefix %x", out, in[:6])
	}
}
