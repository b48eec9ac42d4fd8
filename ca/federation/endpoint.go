package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
)

// EndpointConfig configures the bundle endpoint: this trust domain's
// bundle served to the domains that federate with it.
type EndpointConfig struct {
	// Store holds the authorities the bundle is made of. Required.
	Store       store.Store
	TrustDomain spiffeid.TrustDomain
	// RefreshHint is the spiffe_refresh_hint served; zero means
	// DefaultRefreshHint.
	RefreshHint time.Duration
	// GetCertificate supplies the TLS certificate of each handshake: the
	// CA server's own SVID (https_spiffe) or a Web PKI certificate
	// (https_web, see WebCertificate). Required.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// NewHandler returns the HTTP handler of the bundle endpoint. Each GET is
// answered with the current bundle as a SPIFFE bundle document (JWKS,
// SPIFFE Trust Domain and Bundle section 4): spiffe_sequence is the
// bundle revision, so a root rotation step serves a higher one at once.
func NewHandler(cfg EndpointConfig) http.Handler {
	if cfg.RefreshHint <= 0 {
		cfg.RefreshHint = DefaultRefreshHint
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(logComponent, "bundle_endpoint")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "only GET is allowed", http.StatusMethodNotAllowed)
			return
		}
		b, err := bundle.Read(r.Context(), cfg.Store, cfg.TrustDomain)
		if err != nil {
			log.Error("reading the bundle to serve", logError, err)
			http.Error(w, "bundle unavailable", http.StatusServiceUnavailable)
			return
		}
		sb := b.SPIFFEBundle()
		sb.SetRefreshHint(cfg.RefreshHint)
		doc, err := sb.Marshal()
		if err != nil {
			log.Error("encoding the bundle to serve", logError, err)
			http.Error(w, "bundle unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(doc)
	})
}

// ServeEndpoint serves the bundle endpoint over TLS on ln until ctx ends,
// then shuts down; it returns nil on cancellation.
func ServeEndpoint(ctx context.Context, ln net.Listener, cfg EndpointConfig) error {
	if cfg.GetCertificate == nil {
		return errors.New("federation: the bundle endpoint needs a certificate")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler: NewHandler(cfg),
		// Failed handshakes (scanners, peers with the wrong roots) are
		// the server's debug log, not its stderr.
		ErrorLog:          slog.NewLogLogger(log.With(logComponent, "bundle_endpoint").Handler(), slog.LevelDebug),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cfg.GetCertificate},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("federation: bundle endpoint: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("federation: bundle endpoint: %w", err)
	}
	return nil
}

// WebCertificate loads an https_web certificate and key (PEM files) and
// returns a GetCertificate that reloads them when either file changes, so
// a renewed certificate is served without a restart. A file that fails to
// load fails the first call here; later a bad reload keeps the old pair.
func WebCertificate(certFile, keyFile string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	w := &webCert{certFile: certFile, keyFile: keyFile}
	if err := w.load(); err != nil {
		return nil, err
	}
	return w.get, nil
}

type webCert struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             string
}

func (w *webCert) fileStamp() string {
	var s string
	for _, f := range []string{w.certFile, w.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return s
}

func (w *webCert) load() error {
	stamp := w.fileStamp()
	c, err := tls.LoadX509KeyPair(w.certFile, w.keyFile)
	if err != nil {
		return fmt.Errorf("federation: loading the https_web certificate %s and key %s: %w", w.certFile, w.keyFile, err)
	}
	w.cert, w.stamp = &c, stamp
	return nil
}

func (w *webCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fileStamp() != w.stamp {
		_ = w.load() // a half-written pair keeps the old one until fixed
	}
	return w.cert, nil
}
