package agent

import (
	"errors"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/agent/rotate"
	"github.com/signet-mesh/signet/internal/fileutil"
)

// RotateNowMaxSpread bounds the window over which an agent spreads the
// re-mints that `signet root activate --rotate-now` asks for. Each SVID is
// re-minted at a uniformly random point of a tenth of its lifetime (as
// rotate.MaxJitter spreads normal renewals), at most this long: three
// seconds for a 30 s SVID, ten for the default hour. Ten seconds keeps the
// operator's wait short while a thousand agents with ten SVIDs each ask
// the CA for about a thousand signatures a second, not ten thousand at
// once. Without --rotate-now SVIDs move to the new root at their normal
// half-life.
const RotateNowMaxSpread = 10 * time.Second

// rotateGenerationFile (under DataDir) holds the rotate generation the
// agent acted on, so that a restart does not re-mint everything again.
const rotateGenerationFile = "rotate-generation"

// rotateNow is the agent's side of the CA's rotate generation (the
// SyncEntriesResponse field that `root activate --rotate-now` increments).
// The zero value is ready to use.
type rotateNow struct {
	mu     sync.Mutex
	loaded bool  // acted was read from rotateGenerationFile
	acted  int64 // the generation last acted on
	// nodeSerial is the serial (hex) of the node SVID that a rotate-now
	// asked to replace at nodeAt; a renewed node SVID no longer matches.
	nodeSerial string
	nodeAt     time.Time
	// wake tells nodeRenewLoop that nodeAt changed.
	wake chan struct{}
}

func (r *rotateNow) wakeChan() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	return r.wake
}

// rotateNowSpread is the window over which the re-mint of an SVID valid
// from notBefore to notAfter is spread (see RotateNowMaxSpread).
func rotateNowSpread(notBefore, notAfter time.Time) time.Duration {
	return min(RotateNowMaxSpread, time.Duration(float64(notAfter.Sub(notBefore))*rotate.MaxJitter))
}

// applyRotateGeneration acts on the rotate generation of a sync message:
// when it is past the one acted on, every workload SVID and the node SVID
// are re-minted, each at a random point of its spread window, through the
// same schedule as normal renewals (an SVID already due earlier keeps its
// time). Entries without an SVID are being minted already.
func (a *Agent) applyRotateGeneration(gen int64) {
	r := &a.rotateNow
	r.mu.Lock()
	if !r.loaded {
		r.acted = a.loadRotateGeneration()
		r.loaded = true
	}
	if gen <= r.acted {
		r.mu.Unlock()
		return
	}
	r.acted = gen
	now := a.cfg.Clock.Now()
	a.mu.Lock()
	node, _ := a.src.GetX509SVID()
	a.mu.Unlock()
	if node != nil {
		leaf := node.Certificates[0]
		r.nodeSerial = leaf.SerialNumber.Text(16)
		r.nodeAt = now.Add(jitter(rotateNowSpread(leaf.NotBefore, leaf.NotAfter)))
	}
	r.mu.Unlock()
	if err := fileutil.WriteAtomic(a.dataPath(rotateGenerationFile), []byte(strconv.FormatInt(gen, 10)+"\n"), 0o600); err != nil {
		// Only a restart would re-mint once more.
		a.log.Error("saving rotate generation", "error", err)
	}

	n := 0
	a.rotateMu.Lock()
	for _, e := range a.cache.Entries() {
		svid := a.cache.SVID(e.ID)
		if svid == nil {
			continue
		}
		leaf := svid.Certificates[0]
		at := now.Add(jitter(rotateNowSpread(leaf.NotBefore, leaf.NotAfter)))
		if cur, ok := a.rotateAt[e.ID]; !ok || at.Before(cur) {
			a.rotateAt[e.ID] = at
		}
		n++
	}
	a.rotateMu.Unlock()
	select {
	case a.rescedule <- struct{}{}:
	default:
	}
	select {
	case r.wakeChan() <- struct{}{}:
	default:
	}
	a.log.Info("re-minting every SVID now, as root activation asked", "rotate_generation", gen, "svids", n, "max_spread", RotateNowMaxSpread)
}

// nodeRotateAt returns when to renew the node SVID svid: at, or earlier
// when a rotate-now asked for svid to be replaced.
func (a *Agent) nodeRotateAt(svid *x509svid.SVID, at time.Time) time.Time {
	r := &a.rotateNow
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodeSerial != "" && r.nodeSerial == svid.Certificates[0].SerialNumber.Text(16) && r.nodeAt.Before(at) {
		return r.nodeAt
	}
	return at
}

// loadRotateGeneration reads the generation acted on before a restart; 0
// when there is none (a new agent re-mints once, harmlessly).
func (a *Agent) loadRotateGeneration() int64 {
	data, err := os.ReadFile(a.dataPath(rotateGenerationFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err == nil {
		var gen int64
		if gen, err = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
			return gen
		}
	}
	a.log.Warn("ignoring unreadable rotate generation file", "error", err)
	return 0
}

// jitter returns a uniformly random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(mrand.Int64N(int64(d)))
}
