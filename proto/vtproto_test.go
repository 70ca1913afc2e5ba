package proto

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

// randomEvent sets every field of an Event, each left at its zero value
// one time in four, with properties of 0–5 entries.
func randomEvent(r *rand.Rand) *aluminiv1.Event {
	ev := &aluminiv1.Event{}
	m := ev.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if r.IntN(4) == 0 {
			continue
		}
		switch {
		case f.IsMap():
			mp := m.Mutable(f).Map()
			for j := range r.IntN(6) {
				mp.Set(protoreflect.ValueOfString(fmt.Sprintf("k%d-é", j)).MapKey(), protoreflect.ValueOfString(fmt.Sprintf("v%d☃%d", j, r.Int())))
			}
		case f.Kind() == protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString(fmt.Sprintf("%s-%d-ü", f.Name(), r.Int())))
		case f.Kind() == protoreflect.EnumKind:
			m.Set(f, protoreflect.ValueOfEnum(protoreflect.EnumNumber(r.IntN(5))))
		case f.Kind() == protoreflect.BoolKind:
			m.Set(f, protoreflect.ValueOfBool(true))
		case f.Kind() == protoreflect.Int64Kind:
			m.Set(f, protoreflect.ValueOfInt64(r.Int64()-r.Int64()))
		case f.Kind() == protoreflect.Uint32Kind:
			m.Set(f, protoreflect.ValueOfUint32(r.Uint32()))
		case f.Kind() == protoreflect.Uint64Kind:
			m.Set(f, protoreflect.ValueOfUint64(r.Uint64()))
		default:
			panic(fmt.Sprintf("randomEvent: field %s of kind %v", f.Name(), f.Kind()))
		}
	}
	return ev
}

// TestUnmarshalVTUnsafeMatchesProto checks the generated fast decoder
// against protobuf-go's on random events: the same message, every field.
// It also shows that the decoded strings alias the input (what makes it
// fast, and why the sinker keeps each record's bytes while the event lives).
func TestUnmarshalVTUnsafeMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		want := randomEvent(r)
		wire, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var got aluminiv1.Event
		if err := got.UnmarshalVTUnsafe(wire); err != nil {
			t.Fatalf("event %d: UnmarshalVTUnsafe: %v", i, err)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("event %d: UnmarshalVTUnsafe gave\n%v\nwant\n%v", i, &got, want)
		}
		if got.ClientId != "" {
			before := strings.Clone(got.ClientId)
			for j := range wire {
				wire[j] = 'x'
			}
			if got.ClientId == before {
				t.Fatal("decoded strings do not alias the input; the unsafe decoder is not in use")
			}
		}
	}
	// Truncated input fails in both.
	wire, _ := proto.Marshal(randomEvent(r))
	for n := 1; n < len(wire); n += 7 {
		var a, b aluminiv1.Event
		errA, errB := a.UnmarshalVTUnsafe(wire[:n]), proto.Unmarshal(wire[:n], &b)
		if (errA == nil) != (errB == nil) {
			t.Errorf("%d of %d bytes: UnmarshalVTUnsafe error %v, proto.Unmarshal error %v; want both or neither", n, len(wire), errA, errB)
		}
	}
}
