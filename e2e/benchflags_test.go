package e2e

import (
	"reflect"
	"testing"
)

func TestBenchmarkFlagsParse(t *testing.T) {
	pins, err := parseCPUs("collector=0-1,enricher=2,4,sinker=3,clickhouse=5-6,load=7")
	want := map[string][]int{"collector": {0, 1}, "enricher": {2, 4}, "sinker": {3}, "clickhouse": {5, 6}, "load": {7}}
	if err != nil || !reflect.DeepEqual(pins, want) {
		t.Errorf("parseCPUs = %v, %v; want %v", pins, err, want)
	}
	for _, bad := range []string{"0,1", "reporter=1", "enricher=x", "enricher=2-1"} {
		if got, err := parseCPUs(bad); err == nil {
			t.Errorf("parseCPUs(%q) = %v; want an error", bad, got)
		}
	}
	counts, err := parseInstances("enricher=2,sinker=3")
	if want := map[string]int{"collector": 1, "enricher": 2, "sinker": 3}; err != nil || !reflect.DeepEqual(counts, want) {
		t.Errorf("parseInstances = %v, %v; want %v", counts, err, want)
	}
	for _, bad := range []string{"enricher=0", "reporter=1", "enricher", "enricher=two"} {
		if got, err := parseInstances(bad); err == nil {
			t.Errorf("parseInstances(%q) = %v; want an error", bad, got)
		}
	}
}
