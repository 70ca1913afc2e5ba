package kafkagroup

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Lag sets a consumer-lag gauge by partition from fetches: the records
// between a fetch's last one and the end of its partition. Used by one
// goroutine.
type Lag struct {
	vec  *prometheus.GaugeVec // labelled by partition
	byID map[int]prometheus.Gauge
}

// NewLag sets the gauges of vec, whose one label is the partition.
func NewLag(vec *prometheus.GaugeVec) *Lag {
	return &Lag{vec: vec, byID: map[int]prometheus.Gauge{}}
}

// Set sets the gauge of the partition of msgs, one fetch of it.
func (l *Lag) Set(msgs []kafka.Message) {
	m := msgs[len(msgs)-1]
	if m.HighWaterMark <= 0 {
		return
	}
	g := l.byID[m.Partition]
	if g == nil {
		g = l.vec.WithLabelValues(strconv.Itoa(m.Partition))
		l.byID[m.Partition] = g
	}
	g.Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
}
