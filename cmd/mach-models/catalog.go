package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/maniac-ai/mach/pkg/version"
)

// Catalog environment and limits.
const (
	envCatalogURL   = "LME_CATALOG_URL"
	envCatalogToken = "LME_CATALOG_TOKEN"
	envModelsDir    = "LME_MODELS_DIR"
	catalogPath     = "/v1/local-moe/catalog"
	catalogTimeout  = 15 * time.Second
	maxCatalogSize  = 8 << 20
	maxCatalogItems = 100_000
)

// catalogEntry is one remote model. Only name is required.
type catalogEntry struct {
	Name        string `json:"name"`
	ModelType   string `json:"model_type"`
	SizeBytes   int64  `json:"size_bytes"`
	RepoID      string `json:"repo_id"`
	Revision    string `json:"revision"`
	Description string `json:"description"`
}

// catalogURL turns LME_CATALOG_URL into the catalog endpoint: a full
// .../v1/local-moe/catalog URL is used as is, a base URL gets the path.
func catalogURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s=%q is not an http(s) URL", envCatalogURL, raw)
	}
	if !strings.HasSuffix(strings.TrimRight(u.Path, "/"), catalogPath) {
		u.Path = strings.TrimRight(u.Path, "/") + catalogPath
	}
	return u.String(), nil
}

// fetchCatalog GETs the catalog. Every failure is an error for the caller
// to turn into a warning.
func fetchCatalog(ctx context.Context, client *http.Client, rawURL, token string) ([]catalogEntry, error) {
	u, err := catalogURL(rawURL)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{Timeout: catalogTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mach/"+version.String())
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = " (check " + envCatalogToken + ")"
		}
		return nil, fmt.Errorf("%s answered HTTP %d%s", u, resp.StatusCode, hint)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCatalogSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %v", u, err)
	}
	if len(body) > maxCatalogSize {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", u, maxCatalogSize)
	}
	entries, err := parseCatalog(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", u, err)
	}
	return entries, nil
}

// parseCatalog accepts {"models": [...]} or a bare list; entries without a
// name are dropped.
func parseCatalog(body []byte) ([]catalogEntry, error) {
	body = bytes.TrimSpace(body)
	var list []catalogEntry
	switch {
	case len(body) > 0 && body[0] == '[':
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("malformed catalog JSON: %v", err)
		}
	case len(body) > 0 && body[0] == '{':
		var wrapped struct {
			Models *[]catalogEntry `json:"models"`
		}
		if err := json.Unmarshal(body, &wrapped); err != nil {
			return nil, fmt.Errorf("malformed catalog JSON: %v", err)
		}
		if wrapped.Models == nil {
			return nil, errors.New(`malformed catalog JSON: no "models" list`)
		}
		list = *wrapped.Models
	default:
		return nil, errors.New("malformed catalog JSON: want an object or a list")
	}
	if len(list) > maxCatalogItems {
		return nil, fmt.Errorf("catalog lists %d models, more than %d", len(list), maxCatalogItems)
	}
	out := list[:0]
	for _, e := range list {
		if strings.TrimSpace(e.Name) == "" {
			continue
		}
		if e.SizeBytes < 0 {
			e.SizeBytes = 0
		}
		out = append(out, e)
	}
	return out, nil
}
