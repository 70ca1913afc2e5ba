package sink

import (
	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/kafkagroup"
)

// ReaderConfig configures a GroupReader (lib/kafkagroup).
type ReaderConfig = kafkagroup.Config

// GroupReader reads the enriched topic in the sinkers' consumer group, a
// whole fetch of a partition at a time.
type GroupReader = kafkagroup.Reader

// ReaderStats are a GroupReader's counters.
type ReaderStats = kafkagroup.Stats

// ErrReaderClosed is what FetchBatch returns after Close.
var ErrReaderClosed = kafkagroup.ErrClosed

// NewReader joins the consumer group as "alumini-sinker" unless
// cfg.Dialer names the member otherwise.
func NewReader(cfg ReaderConfig, log *zap.Logger) (*GroupReader, error) {
	if cfg.ClientID == "" {
		cfg.ClientID = "alumini-sinker"
	}
	return kafkagroup.New(cfg, log)
}

var _ Reader = (*GroupReader)(nil)
