package chschema

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/aluminiapp/pipeline/lib/chtest"
	aluminiv1 "github.com/aluminiapp/pipeline/proto/alumini/v1"
)

func TestApplyIsIdempotentAndRowsRoundTrip(t *testing.T) {
	_, conn := chtest.Database(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := Apply(ctx, conn, zap.NewNop()); err != nil {
			t.Fatalf("Apply run %d: %v", i+1, err)
		}
	}
	v, err := Applied(ctx, conn)
	if err != nil || v != Migrations[len(Migrations)-1].Version {
		t.Fatalf("Applied = %d, %v; want %d", v, err, Migrations[len(Migrations)-1].Version)
	}

	ts := time.Date(2026, 11, 3, 10, 30, 0, 0, time.UTC)
	ev := &aluminiv1.Event{
		ClientId: "shop", EventId: "e1", Type: aluminiv1.EventType_EVENT_TYPE_PAGEVIEW,
		TimestampMs: ts.UnixMilli(), ReceivedAtMs: ts.UnixMilli(), Path: "/pricing",
		DeviceType: aluminiv1.DeviceType_DEVICE_TYPE_MOBILE, VisitorId: 42, ScreenWidth: 70000,
		Properties: map[string]string{"plan": "pro", "ab": "b"},
	}
	batch, err := conn.PrepareBatch(ctx, InsertSQL)
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append(Values(ev)...); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	var (
		path, device, typ string
		when              time.Time
		width             uint16
		keys              []string
		visitor           uint64
	)
	row := conn.QueryRow(ctx, "SELECT path, toString(device_type), toString(type), timestamp, screen_width, prop_keys, visitor_id FROM events WHERE client_id = ?", "shop")
	if err := row.Scan(&path, &device, &typ, &when, &width, &keys, &visitor); err != nil {
		t.Fatal(err)
	}
	if path != "/pricing" || device != "mobile" || typ != "pageview" || !when.Equal(ts) || width != 65535 || visitor != 42 {
		t.Errorf("row = %q %q %q %v %d %d; want /pricing mobile pageview %v 65535 42", path, device, typ, when, width, visitor, ts)
	}
	if len(keys) != 2 || keys[0] != "ab" || keys[1] != "plan" {
		t.Errorf("prop_keys = %v; want [ab plan], sorted", keys)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		ev   *aluminiv1.Event
		want error
	}{
		{&aluminiv1.Event{TimestampMs: 1_700_000_000_000}, nil},
		{&aluminiv1.Event{TimestampMs: 4291747199_000}, nil},
		{&aluminiv1.Event{TimestampMs: 4291747200_000}, ErrOutOfRange},
		{&aluminiv1.Event{TimestampMs: -1}, ErrOutOfRange},
		{&aluminiv1.Event{PreviousVisitMs: 5e12}, ErrOutOfRange},
	} {
		if err := Check(tc.ev); !errors.Is(err, tc.want) {
			t.Errorf("Check(%v) = %v; want %v", tc.ev, err, tc.want)
		}
	}
}

// TestCheckSeesEveryStringField puts bytes that are not UTF-8 into each
// string field of Event in turn (found by reflection, so a field added
// to the schema later is covered too) and into a property key and value:
// Check must refuse each.
func TestCheckSeesEveryStringField(t *testing.T) {
	fields := (&aluminiv1.Event{}).ProtoReflect().Descriptor().Fields()
	checked := 0
	for i := range fields.Len() {
		f := fields.Get(i)
		ev := &aluminiv1.Event{TimestampMs: 1_700_000_000_000}
		m := ev.ProtoReflect()
		switch {
		case f.IsMap():
			m.Mutable(f).Map().Set(protoreflect.ValueOfString("plan\xff").MapKey(), protoreflect.ValueOfString("pro"))
			if err := Check(ev); !errors.Is(err, ErrInvalidUTF8) {
				t.Errorf("property key not UTF-8: Check = %v; want ErrInvalidUTF8", err)
			}
			ev.Properties = map[string]string{"plan": "pro\xc3"}
		case f.Kind() == protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString("ok\xffok"))
		default:
			continue
		}
		checked++
		if err := Check(ev); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("%s not UTF-8: Check = %v; want ErrInvalidUTF8", f.Name(), err)
		}
	}
	if checked < 28 {
		t.Errorf("checked %d string fields; the schema has more", checked)
	}
	if err := Check(&aluminiv1.Event{ClientId: "café", Properties: map[string]string{"é": "☃"}}); err != nil {
		t.Errorf("Check(UTF-8 strings) = %v; want nil", err)
	}
}
