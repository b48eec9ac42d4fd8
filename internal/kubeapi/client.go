package kubeapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Limits of what is read from the API server.
const (
	// maxResponseBytes bounds one response body: a pod list of a node
	// with hundreds of pods is a few megabytes.
	maxResponseBytes = 64 << 20
	// maxEventBytes bounds one watch event (one pod).
	maxEventBytes = 4 << 20
	// maxTokenFileBytes bounds a bearer token file.
	maxTokenFileBytes = 64 << 10
	// DefaultTimeout bounds one call that is not a watch.
	DefaultTimeout = 30 * time.Second
)

// Client calls one API server. It is safe for concurrent use.
type Client struct {
	server *url.URL
	http   *http.Client
	// token is a fixed bearer token; tokenFile one read before each call.
	token, tokenFile string
}

// Config describes how to reach an API server.
type Config struct {
	// Server is the API server's URL (https://host:port).
	Server string
	// TLS authenticates the server (RootCAs) and, with client
	// certificates, the caller.
	TLS *tls.Config
	// Token is a bearer token; TokenFile names a file holding one, read
	// before each call. At most one.
	Token, TokenFile string
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("kubeapi: server %q is not an http(s) URL", cfg.Server)
	}
	if cfg.Token != "" && cfg.TokenFile != "" {
		return nil, errors.New("kubeapi: a token and a token file are exclusive")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLS
	// Only the client's own bounds apply: the watch is a long response.
	return &Client{server: u, http: &http.Client{Transport: tr}, token: cfg.Token, tokenFile: cfg.TokenFile}, nil
}

// Server returns the API server's URL.
func (c *Client) Server() string { return c.server.String() }

// APIError is an error status from the API server.
type APIError struct {
	Code   int
	Status Status
}

func (e *APIError) Error() string {
	if e.Status.Message != "" {
		return fmt.Sprintf("kubeapi: %d %s: %s", e.Code, e.Status.Reason, e.Status.Message)
	}
	return fmt.Sprintf("kubeapi: HTTP %d", e.Code)
}

// IsNotFound reports whether err is the API server saying the object does
// not exist.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

// IsGone reports whether err is a watch's resource version being too old
// (410 Gone): the caller lists again.
func IsGone(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == http.StatusGone
}

// CreateTokenReview asks the API server whether token is valid for one of
// audiences (none: the API server's own).
func (c *Client) CreateTokenReview(ctx context.Context, token string, audiences []string) (*TokenReview, error) {
	in := TokenReview{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview", Spec: TokenReviewSpec{Token: token, Audiences: audiences}}
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	var out TokenReview
	if err := c.do(ctx, http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", nil, body, &out); err != nil {
		return nil, fmt.Errorf("creating token review: %w", err)
	}
	return &out, nil
}

// GetNode gets a node by name.
func (c *Client) GetNode(ctx context.Context, name string) (*Node, error) {
	var n Node
	if err := c.do(ctx, http.MethodGet, "/api/v1/nodes/"+url.PathEscape(name), nil, nil, &n); err != nil {
		return nil, fmt.Errorf("getting node %s: %w", name, err)
	}
	return &n, nil
}

// GetPod gets a pod by namespace and name.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*Pod, error) {
	var p Pod
	if err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name), nil, nil, &p); err != nil {
		return nil, fmt.Errorf("getting pod %s/%s: %w", namespace, name, err)
	}
	return &p, nil
}

// NodeSelector is the field selector of the pods bound to node.
func NodeSelector(node string) string { return "spec.nodeName=" + node }

// ListPods lists the pods of all namespaces that match fieldSelector.
func (c *Client) ListPods(ctx context.Context, fieldSelector string) (*PodList, error) {
	return c.ListPodsIn(ctx, "", fieldSelector)
}

// ListPodsIn lists the pods of namespace ("": all) that match
// fieldSelector.
func (c *Client) ListPodsIn(ctx context.Context, namespace, fieldSelector string) (*PodList, error) {
	q := url.Values{}
	if fieldSelector != "" {
		q.Set("fieldSelector", fieldSelector)
	}
	path := "/api/v1/pods"
	if namespace != "" {
		path = "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods"
	}
	var l PodList
	if err := c.do(ctx, http.MethodGet, path, q, nil, &l); err != nil {
		return nil, fmt.Errorf("listing pods (%s %s): %w", namespace, fieldSelector, err)
	}
	return &l, nil
}

// WatchPods watches the pods of all namespaces that match fieldSelector
// from resourceVersion, calling fn with each event until ctx ends (nil),
// the server ends the watch (nil: the caller watches again from the last
// version it saw), fn fails, or the server reports an error event (an
// *APIError; IsGone means list again).
func (c *Client) WatchPods(ctx context.Context, fieldSelector, resourceVersion string, fn func(PodEvent) error) error {
	q := url.Values{}
	q.Set("watch", "true")
	q.Set("allowWatchBookmarks", "true")
	if fieldSelector != "" {
		q.Set("fieldSelector", fieldSelector)
	}
	if resourceVersion != "" {
		q.Set("resourceVersion", resourceVersion)
	}
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/pods", q, nil)
	if err != nil {
		return fmt.Errorf("watching pods (%s): %w", fieldSelector, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev rawEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return fmt.Errorf("reading pod watch: %w", err)
		}
		if len(ev.Object) > maxEventBytes {
			return fmt.Errorf("reading pod watch: event of %d bytes over the limit of %d", len(ev.Object), maxEventBytes)
		}
		out := PodEvent{Type: ev.Type}
		if ev.Type == EventError {
			var st Status
			if err := json.Unmarshal(ev.Object, &st); err != nil {
				return fmt.Errorf("reading pod watch error: %w", err)
			}
			return &APIError{Code: st.Code, Status: st}
		}
		if err := json.Unmarshal(ev.Object, &out.Pod); err != nil {
			return fmt.Errorf("reading pod watch event: %w", err)
		}
		if err := fn(out); err != nil {
			return err
		}
	}
}

// do makes one call and decodes its JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return err
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("response over %d bytes", maxResponseBytes)
	}
	return json.Unmarshal(data, out)
}

// send makes a request and returns the response of a 2xx status; any
// other status is an *APIError.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body []byte) (*http.Response, error) {
	u := *c.server
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	token, err := c.bearer()
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &APIError{Code: resp.StatusCode}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = json.Unmarshal(data, &e.Status) // a body that is no Status still has its code
	return nil, e
}

// bearer returns the token to send: the fixed one, or the token file's
// current content.
func (c *Client) bearer() (string, error) {
	if c.tokenFile == "" {
		return c.token, nil
	}
	t, err := ReadTokenFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("reading the API token: %w", err)
	}
	return t, nil
}

// ReadTokenFile reads a bearer token from a file (a projected service
// account token), without surrounding white space. An empty file is an
// error.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxTokenFileBytes {
		return "", fmt.Errorf("%s: over %d bytes, not a token", path, maxTokenFileBytes)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return t, nil
}
