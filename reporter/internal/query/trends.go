package query

import "fmt"

// Operator is the scope of the cross-client trends: all clients, in
// aggregate only. Only the API's operator authentication makes one.
type Operator struct{ ok bool }

// OperatorScope returns the operator scope; the caller must have checked
// the operator key.
func OperatorScope() Operator { return Operator{ok: true} }

// TrendDimensions are the dimensions trends may group by: properties of
// browsers and places, never of pages or campaigns, which could name a
// client.
var TrendDimensions = map[string]bool{"browser": true, "os": true, "device": true, "country": true}

// Trends is the cross-client share statement: per value of d, the number
// of clients and visitors, keeping only values seen by at least minClients
// clients so no row describes one client. One more row, with total = 1, counts
// all visitors, for the shares. Columns: value, clients, visitors, total.
func (o Operator) Trends(r Range, d Dimension, minClients, limit int) (Query, error) {
	if !o.ok {
		return Query{}, ErrNoClient
	}
	if err := r.check(); err != nil {
		return Query{}, err
	}
	if !TrendDimensions[d.name] {
		return Query{}, fmt.Errorf("%w: trends dimension %q; want browser, os, device or country", ErrBadParam, d)
	}
	if minClients < 2 {
		return Query{}, fmt.Errorf("%w: minimum group size must be at least 2 clients", ErrBadParam)
	}
	var b stmt
	b.sql("SELECT value, clients, visitors, 0 AS total FROM (SELECT " + d.def().expr + ` AS value, uniqExact(client_id) AS clients, uniqExact(client_id, visitor_id) AS visitors
  FROM events WHERE timestamp >= toDateTime(`).bind(r.From.Unix()).sql(") AND timestamp < toDateTime(").bind(r.To.Unix()).sql(`) AND is_bot = 0
    AND (client_id, visitor_id) GLOBAL NOT IN (SELECT client_id, visitor_id FROM ` + erasedTable + `)
  GROUP BY value HAVING clients >= `).bind(minClients).sql(`
  ORDER BY visitors DESC, value LIMIT `).bind(limit).sql(`)
UNION ALL
SELECT '', uniqExact(client_id), uniqExact(client_id, visitor_id), 1
  FROM events WHERE timestamp >= toDateTime(`).bind(r.From.Unix()).sql(") AND timestamp < toDateTime(").bind(r.To.Unix()).sql(`) AND is_bot = 0
    AND (client_id, visitor_id) GLOBAL NOT IN (SELECT client_id, visitor_id FROM ` + erasedTable + `)`)
	return b.query(), nil
}
