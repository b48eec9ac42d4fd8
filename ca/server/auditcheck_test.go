package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/internal/peercred"
	"github.com/signet-mesh/signet/internal/testdir"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStartOnBrokenAuditChain: a store whose audit log lost a record
// starts, but logs it at ERROR naming the missing seq and sets the chain
// metrics; an export (what `signet audit verify` reads) names the seq
// instead of failing with an internal error.
func TestStartOnBrokenAuditChain(t *testing.T) {
	dir := testdir.Short(t)
	cfg := Config{TrustDomain: td, DataDir: filepath.Join(dir, "data"), Passphrase: []byte("test")}
	start := func() (*Server, *syncBuffer, *prometheus.Registry) {
		t.Helper()
		logs := &syncBuffer{}
		reg := prometheus.NewPedanticRegistry()
		cfg := cfg
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		cfg.Metrics = NewMetrics(reg)
		srv, err := NewForTest(context.Background(), cfg, TestOptions{StoreNoSync: true, KeyKDFIterations: testKDFIterations})
		if err != nil {
			t.Fatal(err)
		}
		return srv, logs, reg
	}

	srv, logs, reg := start()
	if v, ok := gauge(t, reg, MetricAuditChainOK, nil); !ok || v != 1 {
		t.Errorf("%s on a sound log = %v (present %v), want 1", MetricAuditChainOK, v, ok)
	}
	if !strings.Contains(logs.String(), "audit chain verified") {
		t.Errorf("no \"audit chain verified\" line in the log:\n%s", logs)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		if _, err := srv.Admin().CreateJoinToken(context.Background(), &adminv1.CreateJoinTokenRequest{NodeName: name}); err != nil {
			t.Fatal(err)
		}
	}
	srv.Close()

	// Record 2 disappears from the file.
	const lost = 2
	db, err := bbolt.Open(filepath.Join(cfg.DataDir, DBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("audit")).Delete(binary.BigEndian.AppendUint64(nil, lost))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	srv, logs, reg = start()
	defer srv.Close()
	if v, _ := gauge(t, reg, MetricAuditChainOK, nil); v != 0 {
		t.Errorf("%s = %v after a record was lost, want 0", MetricAuditChainOK, v)
	}
	if v, _ := gauge(t, reg, MetricAuditChainFirstBadSeq, nil); v != lost {
		t.Errorf("%s = %v, want %d (the missing record)", MetricAuditChainFirstBadSeq, v, lost)
	}
	var broken string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "audit chain is broken") {
			broken = line
		}
	}
	if !strings.Contains(broken, `"level":"ERROR"`) || !strings.Contains(broken, "record seq 2 is missing") {
		t.Fatalf("no ERROR line naming the missing record seq 2 in the log:\n%s", logs)
	}

	// Served: the export a live `signet audit verify` reads names the seq.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin.sock")
	adminLn, err := peercred.Listen(adminPath, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adminLn) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient("unix://"+adminPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin := adminv1.NewAdminServiceClient(conn)
	err = drain(admin.ExportAudit(ctx, &adminv1.ExportAuditRequest{}))
	if status.Code(err) != codes.DataLoss || !strings.Contains(status.Convert(err).Message(), "record seq 2 is missing") {
		t.Errorf("export of a log without record 2: %v, want DataLoss naming seq 2", err)
	}

	// An unknown record type is the caller's error, with the valid types.
	err = drain(admin.ExportAudit(ctx, &adminv1.ExportAuditRequest{Types: []string{"svid.issued", "svid.isued"}}))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), `"svid.isued"`) ||
		!strings.Contains(status.Convert(err).Message(), strings.Join(audit.Types(), ", ")) {
		t.Errorf("export of an unknown type: %v, want InvalidArgument naming it and listing the types", err)
	}
}

// drain reads an export stream to its end and returns its error.
func drain(stream adminv1.AdminService_ExportAuditClient, err error) error {
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}
