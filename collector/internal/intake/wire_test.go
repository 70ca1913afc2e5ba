package intake

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// fill sets every field of m, recursively, to a non-zero value.
func fill(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j := 0; j < 3; j++ {
				mp.Set(protoreflect.ValueOfString(fmt.Sprintf("k%d", j)).MapKey(), protoreflect.ValueOfString(fmt.Sprintf("v%d", j)))
			}
		case fd.Kind() == protoreflect.MessageKind:
			fill(m.Mutable(fd).Message())
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(string(fd.Name())+" ✓"))
		case fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, protoreflect.ValueOfBytes([]byte{192, 0, 2, 1}))
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(fd.Enum().Values().Get(fd.Enum().Values().Len()-1).Number()))
		case fd.Kind() == protoreflect.Uint32Kind:
			m.Set(fd, protoreflect.ValueOfUint32(uint32(300+i)))
		case fd.Kind() == protoreflect.Int64Kind:
			m.Set(fd, protoreflect.ValueOfInt64(1_764_000_000_000+int64(i)))
		default:
			panic(fmt.Sprintf("field %s has kind %s, which appendRawHit does not write; teach it and fill", fd.FullName(), fd.Kind()))
		}
	}
}

func TestAppendRawHitCoversEveryField(t *testing.T) {
	full := &aluminiv1.RawHit{}
	fill(full.ProtoReflect())
	for _, hit := range []*aluminiv1.RawHit{
		full,
		{},
		{ClientId: "shop", Consent: &aluminiv1.Consent{}, SentAtMs: -5},
		{Consent: &aluminiv1.Consent{GlobalPrivacyControl: true}, ClientHints: &aluminiv1.ClientHints{UaModel: "Pixel"}},
	} {
		var got aluminiv1.RawHit
		if err := proto.Unmarshal(appendRawHit(nil, hit), &got); err != nil {
			t.Fatalf("appendRawHit(%v) does not decode: %v", hit, err)
		}
		if !proto.Equal(&got, hit) {
			t.Errorf("appendRawHit round trip = %v; want %v (a RawHit field appendRawHit does not write?)", &got, hit)
		}
	}
}
