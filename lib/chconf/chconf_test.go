package chconf

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want error
	}{
		{Config{Addr: "127.0.0.1:9000", Database: "alumini"}, nil},
		{Config{Addr: "ch:9000", Database: "_x1"}, nil},
		{Config{Addr: "127.0.0.1:9000", Database: "bad-name"}, ErrBadDatabaseName},
		{Config{Addr: "127.0.0.1:9000", Database: "x; DROP DATABASE y"}, ErrBadDatabaseName},
		{Config{Addr: "127.0.0.1:9000", Database: "1db"}, ErrBadDatabaseName},
		{Config{Addr: "127.0.0.1:9000", Database: ""}, ErrBadDatabaseName},
	} {
		err := tc.cfg.Validate()
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("Validate(%+v) = %v; want %v", tc.cfg, err, tc.want)
		}
	}
	if err := (&Config{Addr: "no-port", Database: "a"}).Validate(); err == nil {
		t.Error("Validate with an address without port = nil; want an error")
	}
}
