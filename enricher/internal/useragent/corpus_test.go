package useragent

import (
	"testing"

	"github.com/aluminiapp/pipeline/enricher/internal/useragent/uacorpus"
)

// uapCase is one case of the uap-core corpora.
type uapCase = uacorpus.Case

func loadUAP(t testing.TB, name string) []uapCase { return uacorpus.Load(t, name) }
