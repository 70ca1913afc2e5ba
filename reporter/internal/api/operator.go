package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/reporter/internal/clientfile"
	"github.com/aluminiapp/pipeline/reporter/internal/query"
)

func (h *Handler) clientsOff(w http.ResponseWriter) int {
	return writeError(w, http.StatusNotFound, "client management is off: the registry is not a local file")
}

func (h *Handler) serveListClients(w http.ResponseWriter, r *http.Request) int {
	if h.cfg.Clients == nil {
		return h.clientsOff(w)
	}
	if err := checkParams(r.URL.Query(), paramSet{}); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	cs, err := h.cfg.Clients.List()
	if err != nil {
		h.cfg.Log.Error("reading client registry", zap.Error(err))
		return writeError(w, http.StatusInternalServerError, "internal error: reading the client registry failed")
	}
	out := make([]clientfile.View, len(cs))
	for i, c := range cs {
		out[i] = clientfile.ViewOf(c)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"clients": out})
}

// addClientRequest is the body of POST /api/v1/operator/clients.
type addClientRequest struct {
	ID string `json:"id"`
	clientfile.Settings
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// editFailed answers a failed registry edit.
func (h *Handler) editFailed(w http.ResponseWriter, err error) int {
	switch {
	case errors.Is(err, clientfile.ErrNotFound):
		return writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, clientfile.ErrExists):
		return writeError(w, http.StatusConflict, err.Error())
	case strings.Contains(err.Error(), "would make the registry invalid"):
		return writeError(w, http.StatusBadRequest, err.Error())
	default:
		h.cfg.Log.Error("editing client registry", zap.Error(err))
		return writeError(w, http.StatusInternalServerError, "internal error: writing the client registry failed")
	}
}

func (h *Handler) serveAddClient(w http.ResponseWriter, r *http.Request) int {
	if h.cfg.Clients == nil {
		return h.clientsOff(w)
	}
	var req addClientRequest
	if err := decodeBody(r, &req); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	c := registry.Client{ID: req.ID}
	req.Settings.Apply(&c)
	key, err := h.cfg.Clients.Add(c)
	if err != nil {
		return h.editFailed(w, err)
	}
	h.cfg.Log.Info("audit: client added", zap.String("client_id", c.ID), zap.String("remote_addr", r.RemoteAddr))
	return writeJSON(w, http.StatusCreated, map[string]string{"client_id": c.ID, "api_key": key,
		"note": "the API key is shown only once; the registry stores its hash"})
}

func (h *Handler) serveUpdateClient(w http.ResponseWriter, r *http.Request) int {
	if h.cfg.Clients == nil {
		return h.clientsOff(w)
	}
	if err := checkParams(r.URL.Query(), paramSet{"id": false}); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	id, _ := first(r.URL.Query(), "id")
	var s clientfile.Settings
	if err := decodeBody(r, &s); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	if err := h.cfg.Clients.Update(id, s); err != nil {
		return h.editFailed(w, err)
	}
	h.cfg.Log.Info("audit: client settings changed", zap.String("client_id", id), zap.String("remote_addr", r.RemoteAddr))
	cs, err := h.cfg.Clients.List()
	if err != nil {
		return h.editFailed(w, err)
	}
	for _, c := range cs {
		if c.ID == id {
			return writeJSON(w, http.StatusOK, clientfile.ViewOf(c))
		}
	}
	return h.editFailed(w, clientfile.ErrNotFound)
}

func (h *Handler) serveIssueKey(w http.ResponseWriter, r *http.Request) int {
	if h.cfg.Clients == nil {
		return h.clientsOff(w)
	}
	params := r.URL.Query()
	if err := checkParams(params, paramSet{"id": false, "rotate": false}); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	id, _ := first(params, "id")
	rotate, err := parseBool(params, "rotate")
	if err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	key, err := h.cfg.Clients.IssueKey(id, rotate)
	if err != nil {
		return h.editFailed(w, err)
	}
	h.cfg.Log.Info("audit: api key issued", zap.String("client_id", id), zap.Bool("rotate", rotate), zap.String("remote_addr", r.RemoteAddr))
	return writeJSON(w, http.StatusCreated, map[string]any{"client_id": id, "api_key": key, "rotated": rotate,
		"note": "the API key is shown only once; the registry stores its hash"})
}

var trendsParams = paramSet{"period": false, "from": false, "to": false, "tz": false, "dimension": false, "limit": false}

func (h *Handler) serveTrends(w http.ResponseWriter, r *http.Request) int {
	params := r.URL.Query()
	if err := checkParams(params, trendsParams); err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	// Trends span all clients, so no client's zone applies: UTC unless
	// the operator names one.
	loc, err := parseLocation(params, time.UTC)
	if err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	rng, err := parseRange(params, h.now(), loc)
	if err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	name, _ := first(params, "dimension")
	d, err := query.ParseDimension(name)
	if err != nil || !query.TrendDimensions[name] {
		return writeError(w, http.StatusBadRequest, "parameter \"dimension\": want browser, os, device or country")
	}
	limit, err := parseLimit(params, 20, h.cfg.MaxRows)
	if err != nil {
		return writeError(w, http.StatusBadRequest, err.Error())
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueryTimeout)
	defer cancel()
	rows, total, err := h.cfg.Store.Trends(ctx, query.OperatorScope(), rng, d, h.cfg.TrendsMinClients, limit)
	if err != nil {
		return h.queryFailed(w, r, "trends", "", err)
	}
	rg := rangeOf(rng, loc)
	return writeJSON(w, http.StatusOK, map[string]any{
		"from": rg.From, "to": rg.To, "dimension": name, "min_clients": h.cfg.TrendsMinClients,
		"total_visitors": total, "results": rows,
	})
}
