package kubetest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// modulePath is this module's path: the binaries are built from its go.mod,
// which pins k8s.io/kubernetes and the etcd server.
const modulePath = "github.com/signet-mesh/signet/test/kube"

// buildRecipe names how the binaries are built. Change it whenever the build
// command below changes, so that cached binaries built the old way are not
// reused.
const buildRecipe = "kubetest-bins-v1"

// Binaries are the paths of a kube-apiserver and an etcd built from this
// module's go.mod.
type Binaries struct {
	APIServer string
	Etcd      string
}

// BuildBinaries returns kube-apiserver and etcd built from this module's
// pinned versions, building them on the first call for a given set of module
// versions and Go toolchain and reusing them afterwards. The binaries live
// in a directory of the user's cache directory named by a hash of the go
// version and `go list -m all`; a file lock lets concurrent test binaries
// share one build. A cold build takes about 10 minutes on 2 cores and 3 GB
// of memory (the Go build cache makes later ones fast).
//
// It must run with its working directory inside this module (a test's
// package directory, or test/kube for cmd/buildbins). logf, if not nil,
// reports what it does.
func BuildBinaries(logf func(format string, args ...any)) (Binaries, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	modDir, key, err := buildKey()
	if err != nil {
		return Binaries{}, err
	}
	root, err := os.UserCacheDir()
	if err != nil {
		return Binaries{}, fmt.Errorf("kubetest: finding a cache directory for the binaries: %w", err)
	}
	root = filepath.Join(root, "signet-kube-bin")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("kubetest: creating the binary cache: %w", err)
	}
	dir := filepath.Join(root, key)
	bins := Binaries{
		APIServer: filepath.Join(dir, "kube-apiserver"),
		Etcd:      filepath.Join(dir, "etcd"),
	}
	if present(bins) {
		logf("kube-apiserver and etcd: cached in %s", dir)
		return bins, nil
	}

	unlock, err := lockFile(filepath.Join(root, key+".lock"), logf)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()
	if present(bins) { // built by whoever held the lock
		logf("kube-apiserver and etcd: built by another process in %s", dir)
		return bins, nil
	}

	tmp, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return Binaries{}, fmt.Errorf("kubetest: creating a build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	version, err := kubernetesVersion(modDir)
	if err != nil {
		return Binaries{}, err
	}
	logf("kube-apiserver and etcd: building into %s (a cold build takes about 10 minutes)", dir)
	start := time.Now()
	// Both in one go build, so that their common packages compile once and
	// the two links share the cores. Debug info is dropped: the binaries are
	// only run, and linking kube-apiserver is much faster without it.
	cmd := exec.Command("go", "build", "-o", tmp+string(filepath.Separator),
		"-ldflags", "-s -w -X k8s.io/component-base/version.gitVersion="+version,
		"k8s.io/kubernetes/cmd/kube-apiserver", "./cmd/etcd")
	cmd.Dir = modDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("kubetest: building kube-apiserver and etcd: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Binaries{}, fmt.Errorf("kubetest: moving the built binaries into the cache: %w", err)
	}
	logf("kube-apiserver and etcd: built in %s", time.Since(start).Round(time.Second))
	return bins, nil
}

func present(b Binaries) bool {
	for _, p := range []string{b.APIServer, b.Etcd} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// buildKey returns this module's directory and a key that changes whenever
// anything that goes into the binaries does: the Go toolchain, the target,
// the versions of every module in the build list, and the build recipe.
func buildKey() (modDir, key string, err error) {
	out, err := goCmd("", "list", "-m", "-f", "{{.Path}}\t{{.Dir}}")
	if err != nil {
		return "", "", err
	}
	path, modDir, _ := strings.Cut(strings.TrimSpace(out), "\t")
	if path != modulePath {
		return "", "", fmt.Errorf("kubetest: building the binaries needs the working directory inside %s, not in module %q", modulePath, path)
	}
	env, err := goCmd(modDir, "env", "GOVERSION", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "CGO_ENABLED", "GOEXPERIMENT")
	if err != nil {
		return "", "", err
	}
	mods, err := goCmd(modDir, "list", "-m", "all")
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	for _, s := range []string{buildRecipe, env, mods} {
		fmt.Fprintf(h, "%d\n%s", len(s), s)
	}
	return modDir, hex.EncodeToString(h.Sum(nil))[:20], nil
}

// kubernetesVersion returns the version of k8s.io/kubernetes in the build
// list, which the API server reports as its own.
func kubernetesVersion(modDir string) (string, error) {
	out, err := goCmd(modDir, "list", "-m", "k8s.io/kubernetes")
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return "", fmt.Errorf("kubetest: go list -m k8s.io/kubernetes printed %q", out)
	}
	return f[1], nil
}

func goCmd(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubetest: go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out), nil
}

// lockFile takes an exclusive flock on path, waiting for whoever holds it
// (another test binary building the same binaries).
func lockFile(path string, logf func(string, ...any)) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubetest: opening the build lock: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		logf("kube-apiserver and etcd: waiting for another process building them (lock %s)", path)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kubetest: locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
