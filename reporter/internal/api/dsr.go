package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

func visitorParam(w http.ResponseWriter, r *http.Request, known paramSet) (uint64, int) {
	params := r.URL.Query()
	if err := checkParams(params, known); err != nil {
		return 0, writeError(w, http.StatusBadRequest, err.Error())
	}
	s, ok := first(params, "visitor_id")
	id, err := strconv.ParseUint(s, 10, 64)
	if !ok || err != nil {
		return 0, writeError(w, http.StatusBadRequest, "parameter \"visitor_id\": want the visitor's numeric id (as in exports and the events table)")
	}
	return id, 0
}

// serveExport answers a data subject access request: every event of one
// visitor of the key's client, as JSON or CSV.
func (h *Handler) serveExport(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	id, status := visitorParam(w, r, paramSet{"client_id": false, "visitor_id": false, "format": false})
	if status != 0 {
		return status
	}
	format, _ := first(r.URL.Query(), "format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "csv" {
		return writeError(w, http.StatusBadRequest, "parameter \"format\": want json or csv")
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	defer cancel()
	events, err := h.cfg.Store.Export(ctx, s, id, h.cfg.MaxExport)
	if err != nil {
		return h.queryFailed(w, r, "export", c.ID, err)
	}
	h.cfg.Log.Info("visitor export", zap.String("client_id", c.ID), zap.Uint64("visitor_id", id), zap.Int("events", len(events)), zap.String("format", format))
	if format == "json" {
		for _, ev := range events {
			typeExportJSON(ev)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"client_id": c.ID, "visitor_id": strconv.FormatUint(id, 10), "events": events})
	}
	var b strings.Builder
	cw := csv.NewWriter(&b)
	cols := query.ExportColumns()
	_ = cw.Write(cols) // a strings.Builder does not fail.
	for _, ev := range events {
		rec := make([]string, len(cols))
		for i, col := range cols {
			switch v := ev[col].(type) {
			case string:
				if col == "previous_visit" && noVisit(v) {
					v = ""
				}
				rec[i] = csvSafe(v)
			case []string:
				rec[i] = csvSafe(strings.Join(v, "|"))
			}
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="visitor-%s-%d.csv"`, c.ID, id))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return http.StatusOK
}

// exportNumbers are the export columns whose values are numbers small
// enough for any JSON reader. The UInt64 ids (visitor_id, session_id) stay
// strings: JavaScript's numbers hold integers only up to 2^53 exactly, and
// an id that a reader rounds names another visitor.
var exportNumbers = map[string]bool{"screen_width": true, "screen_height": true, "is_bot": true, "is_new_visitor": true}

// typeExportJSON turns an export event, read as text, into what JSON readers
// expect: numbers as numbers and no previous visit as null.
func typeExportJSON(ev query.Event) {
	for col, v := range ev {
		s, ok := v.(string)
		switch {
		case !ok:
		case exportNumbers[col]:
			ev[col] = json.Number(s)
		case col == "previous_visit" && noVisit(s):
			ev[col] = nil
		}
	}
}

// noVisit says whether a previous_visit value is the zero DateTime: "no
// previous visit". ClickHouse 18.16 writes it as 0000-00-00 00:00:00,
// newer servers as 1970-01-01 00:00:00.
func noVisit(v string) bool { return v == "0000-00-00 00:00:00" || v == "1970-01-01 00:00:00" }

// csvSafe defuses values a spreadsheet would run as a formula (CSV
// injection): the URLs and titles in an export come from the web.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// serveErase answers an erasure request: the visitor is hidden at once and
// the next batch deletes their rows; the answer is 202 with the state
// (200 when nothing was stored). Requests are limited per client.
func (h *Handler) serveErase(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	id, status := visitorParam(w, r, paramSet{"client_id": false, "visitor_id": false})
	if status != 0 {
		return status
	}
	if d, ok := h.limits.erasures.take(c.ID, h.now()); !ok {
		h.cfg.Log.Info("audit: visitor erasure refused: over the client's erasure rate",
			zap.String("client_id", c.ID), zap.Uint64("visitor_id", id),
			zap.String("key_hash_prefix", keyHashPrefix(r)), zap.String("remote_addr", r.RemoteAddr))
		return h.limits.tooMany(w, limitErasures, d, fmt.Sprintf("erasure rate limit of %g requests per second exceeded", h.cfg.ErasureRate))
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	defer cancel()
	e, err := h.cfg.Store.Erase(ctx, s, id, h.now())
	// The audit line is written whatever happened, with who asked.
	h.cfg.Log.Info("audit: visitor erasure requested",
		zap.String("client_id", c.ID), zap.Uint64("visitor_id", id),
		zap.String("key_hash_prefix", keyHashPrefix(r)), zap.String("remote_addr", r.RemoteAddr),
		zap.Bool("ok", err == nil), zap.String("state", e.State), zap.Error(err))
	if errors.Is(err, query.ErrLayoutMismatch) {
		// The operator's to fix; the request can be repeated then.
		return writeError(w, http.StatusServiceUnavailable, "erasure is unavailable: the reporter's cluster setting does not match the database's layout (operators: set -clickhouse-cluster as for the sinker)")
	}
	if err != nil {
		return h.queryFailed(w, r, "erase", c.ID, err)
	}
	code := http.StatusAccepted
	if e.Done {
		code = http.StatusOK
	}
	return writeJSON(w, code, e)
}

func (h *Handler) serveErasureStatus(w http.ResponseWriter, r *http.Request, c *registry.Client, s query.Scope) int {
	id, status := visitorParam(w, r, paramSet{"client_id": false, "visitor_id": false})
	if status != 0 {
		return status
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	defer cancel()
	e, err := h.cfg.Store.ErasureStatus(ctx, s, id)
	if errors.Is(err, query.ErrNoErasure) {
		return writeError(w, http.StatusNotFound, "no erasure was requested for this visitor")
	}
	if err != nil {
		return h.queryFailed(w, r, "erasure_status", c.ID, err)
	}
	if e.Done {
		h.cfg.Log.Info("audit: visitor erasure done", zap.String("client_id", c.ID), zap.Uint64("visitor_id", id))
	}
	return writeJSON(w, http.StatusOK, e)
}

// keyHashPrefix identifies the key of a request in audit lines without
// writing the key down.
func keyHashPrefix(r *http.Request) string {
	key, _ := bearerToken(r.Header.Get("Authorization"))
	return registry.HashAPIKey(key)[:19]
}
