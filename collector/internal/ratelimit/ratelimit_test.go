package ratelimit

import (
	"strconv"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	k := New(1000)
	now := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		if ok, _ := k.Allow("a", 1, 5, 1, now); !ok {
			t.Fatalf("Allow #%d within burst = false; want true", i)
		}
	}
	ok, wait := k.Allow("a", 1, 5, 1, now)
	if ok || wait != time.Second {
		t.Errorf("Allow past burst = %v, %v; want false, 1s", ok, wait)
	}
	if ok, _ := k.Allow("b", 1, 5, 1, now); !ok {
		t.Error("Allow(b) = false; want true: keys have their own buckets")
	}
	if ok, _ := k.Allow("a", 1, 5, 1, now.Add(time.Second)); !ok {
		t.Error("Allow(a) a second later = false; want true after refill")
	}
	if ok, wait := k.Allow("c", 10, 5, 6, now); ok || wait <= 0 {
		t.Errorf("Allow(n > burst) = %v, %v; want false with a wait", ok, wait)
	}
	if ok, _ := k.Allow("d", 0, 0, 1000, now); !ok {
		t.Error("Allow with rate 0 = false; want no limit")
	}
}

func TestKeysAreBounded(t *testing.T) {
	k := New(shards * 4)
	now := time.Unix(1000, 0)
	for i := 0; i < 10000; i++ {
		k.Allow(strconv.Itoa(i), 1, 1, 1, now) // every bucket left empty
	}
	if n := k.Len(); n > shards*4 {
		t.Errorf("Len after 10000 keys = %d; want at most %d", n, shards*4)
	}
}
