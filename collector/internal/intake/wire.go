package intake

import (
	"google.golang.org/protobuf/encoding/protowire"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// appendRawHit encodes hit in the protobuf wire format, as proto.Marshal
// does, without reflection: it is a fifth of the collector's CPU per event
// otherwise (the properties map takes protobuf-go's slow path). Every field
// of RawHit must be written here; TestAppendRawHitCoversEveryField fills
// each field the schema has and fails when one is missing, so a field
// appended to the proto cannot be silently dropped.
func appendRawHit(b []byte, hit *aluminiv1.RawHit) []byte {
	return appendRawHitProps(b, hit, nil)
}

// appendRawHitProps is appendRawHit with props written as hit's custom
// properties too (the native decoder keeps them in a list, not a map).
func appendRawHitProps(b []byte, hit *aluminiv1.RawHit, props []prop) []byte {
	b = appendString(b, 1, hit.ClientId)
	b = appendString(b, 2, hit.EventId)
	b = appendVarint(b, 3, uint64(hit.Type))
	b = appendString(b, 4, hit.Name)
	b = appendString(b, 5, hit.Url)
	b = appendString(b, 6, hit.Referrer)
	b = appendString(b, 7, hit.Title)
	b = appendString(b, 8, hit.UserAgent)
	if len(hit.Ip) > 0 {
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, hit.Ip)
	}
	b = appendString(b, 10, hit.Language)
	b = appendVarint(b, 11, uint64(hit.ScreenWidth))
	b = appendVarint(b, 12, uint64(hit.ScreenHeight))
	b = appendString(b, 13, hit.Timezone)
	b = appendString(b, 14, hit.CookieId)
	if c := hit.Consent; c != nil {
		var n int
		if c.DoNotTrack {
			n += 2
		}
		if c.GlobalPrivacyControl {
			n += 2
		}
		b = protowire.AppendTag(b, 15, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = appendVarint(b, 1, boolInt(c.DoNotTrack))
		b = appendVarint(b, 2, boolInt(c.GlobalPrivacyControl))
	}
	for k, v := range hit.Properties {
		b = appendProperty(b, k, v)
	}
	for _, p := range props {
		b = appendProperty(b, p.key, p.value)
	}
	b = appendVarint(b, 17, uint64(hit.SentAtMs))
	b = appendVarint(b, 18, uint64(hit.ReceivedAtMs))
	if ch := hit.ClientHints; ch != nil {
		fields := [...]string{ch.Ua, ch.UaMobile, ch.UaPlatform, ch.UaPlatformVersion, ch.UaModel, ch.UaFullVersionList}
		n := 0
		for i, s := range fields {
			if s != "" {
				n += protowire.SizeTag(protowire.Number(i+1)) + protowire.SizeBytes(len(s))
			}
		}
		b = protowire.AppendTag(b, 19, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		for i, s := range fields {
			b = appendString(b, protowire.Number(i+1), s)
		}
	}
	b = appendString(b, 20, hit.UserId)
	return b
}

// appendProperty writes one entry of the properties map (field 16): a
// message of key (1) and value (2).
func appendProperty(b []byte, k, v string) []byte {
	n := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
	b = protowire.AppendTag(b, 16, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, k)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendString writes a string field, or nothing for "" as proto3 does.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendVarint writes a varint field (ints, enums, bools), nothing for 0.
// Negative int64 values take ten bytes, as in proto.Marshal.
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func boolInt(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// rawHitSizeHint is a little more than appendRawHit will write, so that it
// writes into one allocation.
func rawHitSizeHint(hit *aluminiv1.RawHit, props []prop) int {
	n := 96 + len(hit.ClientId) + len(hit.EventId) + len(hit.Name) + len(hit.Url) + len(hit.Referrer) +
		len(hit.Title) + len(hit.UserAgent) + len(hit.Ip) + len(hit.Language) + len(hit.Timezone) +
		len(hit.CookieId) + len(hit.UserId)
	for k, v := range hit.Properties {
		n += len(k) + len(v) + 8
	}
	for _, p := range props {
		n += len(p.key) + len(p.value) + 8
	}
	if ch := hit.ClientHints; ch != nil {
		n += len(ch.Ua) + len(ch.UaMobile) + len(ch.UaPlatform) + len(ch.UaPlatformVersion) + len(ch.UaModel) + len(ch.UaFullVersionList) + 16
	}
	return n
}
