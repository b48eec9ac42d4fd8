package rotation

import (
	"context"
	"errors"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// ScheduleActor names the automatic root schedule in audit records and
// logs, where an operator's steps name the operator.
const ScheduleActor = "signet (automatic root schedule)"

// scheduleEvery is how often the schedule looks at the roots. Its steps
// fall months apart, and a refused retirement scans the SVID index, so
// once a minute is often enough and cheap enough; roots that live less
// than 100 minutes (tests, demos) are looked at every 1/100 of their life,
// down to Run's own checkInterval.
const scheduleEvery = time.Minute

// scheduleState is what the schedule remembers between looks. Run's
// goroutine writes it; note is read by ScheduleStatus under Manager.mu.
type scheduleState struct {
	next time.Time // when to look next
	note string    // the last reason for waiting that was logged
}

// ScheduleStatus describes the automatic root schedule for `signet root
// status`.
type ScheduleStatus struct {
	// Automatic reports whether the schedule runs (Config.AutoRotateRoots).
	Automatic bool
	// NextStep is "prepare", "activate <id>" or "retire <id>", or empty
	// when the schedule has nothing to do (off, or an imported root).
	NextStep string
	// NextStepAt is when NextStep is due; zero for a retirement, taken as
	// soon as it is safe.
	NextStepAt time.Time
	// Waiting is why a due step has not been taken, if it has not.
	Waiting string
}

// Schedule returns the automatic root schedule's next step.
func (m *Manager) Schedule(ctx context.Context) (ScheduleStatus, error) {
	st := ScheduleStatus{Automatic: m.cfg.AutoRotateRoots}
	if !st.Automatic {
		return st, nil
	}
	var auths []*store.Authority
	err := m.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		auths, err = tx.ListAuthorities()
		return err
	})
	if err != nil {
		return st, wrapErr("reading authorities: %w", err)
	}
	m.mu.Lock()
	st.Waiting = m.schedule.note
	m.mu.Unlock()
	active := rootsIn(auths, store.StateActive)
	if len(active) != 1 {
		return st, nil
	}
	root := active[0]
	switch retiring, prepared := rootsIn(auths, store.StateRetiring), rootsIn(auths, store.StatePrepared); {
	case len(retiring) > 0:
		st.NextStep = "retire " + retiring[0].ID
	case len(prepared) > 0:
		st.NextStep, st.NextStepAt = "activate "+prepared[0].ID, lifePoint(root.NotBefore, root.NotAfter, 5, 6)
	case root.Imported:
		st.Waiting = importedNote(root)
	default:
		st.NextStep, st.NextStepAt = "prepare", lifePoint(root.NotBefore, root.NotAfter, 1, 2)
	}
	return st, nil
}

func importedNote(root *store.Authority) string {
	return "root " + root.ID + " was imported from your PKI: prepare its successor with signet root prepare --from-file"
}

// scheduleRoots takes the automatic root schedule's next step, if one is
// due. The steps are the operator's steps, with the same safety checks:
//
//   - at 1/2 of the active root's life, prepare a new root (it enters the
//     bundle, agents pick it up);
//   - at 5/6, activate the prepared root, once every connected agent has
//     applied the bundle that holds it (the SVIDs then move to the new
//     root as they rotate);
//   - then retire the old root, as soon as no current SVID chains to it.
//
// A step that is refused (an agent is behind, SVIDs still chain to the old
// root) is tried again at the next look; the reason is logged when it
// changes. A root imported from the organisation's PKI is never replaced:
// the schedule only warns, and the operator prepares its successor.
func (m *Manager) scheduleRoots(ctx context.Context) {
	now := m.clock.Now()
	if now.Before(m.schedule.next) {
		return
	}
	note, life, err := m.scheduleStep(ctx, now)
	// Half a tick early, so that jitter in Run's ticks never skips a look.
	m.schedule.next = now.Add(min(scheduleEvery, max(life/100, checkInterval)) - checkInterval/2)
	switch {
	case err != nil && errors.Is(err, ErrUnsafe):
		note = err.Error()
	case err != nil:
		if ctx.Err() == nil {
			m.log.Error("automatic root schedule", logError, err)
		}
		return
	}
	m.mu.Lock()
	changed := note != m.schedule.note
	m.schedule.note = note
	m.mu.Unlock()
	if note != "" && changed {
		m.log.Info("automatic root schedule is waiting", "reason", note)
	}
}

// scheduleStep takes the step due at now, if any. It returns why it is
// waiting when a step is due but cannot be taken yet, and the lifetime of
// the active root.
func (m *Manager) scheduleStep(ctx context.Context, now time.Time) (waiting string, life time.Duration, err error) {
	var auths []*store.Authority
	err = m.cfg.Store.View(ctx, func(tx store.Tx) error {
		auths, err = tx.ListAuthorities()
		return err
	})
	if err != nil {
		return "", 0, err
	}
	active := rootsIn(auths, store.StateActive)
	if len(active) != 1 {
		return "", 0, nil // nothing to measure the schedule by
	}
	root := active[0]
	life = root.NotAfter.Sub(root.NotBefore)
	if retiring := rootsIn(auths, store.StateRetiring); len(retiring) > 0 {
		_, err := m.RetireRoot(ctx, RetireParams{ID: retiring[0].ID, Actor: ScheduleActor})
		return "", life, err
	}
	if prepared := rootsIn(auths, store.StatePrepared); len(prepared) > 0 {
		if now.Before(lifePoint(root.NotBefore, root.NotAfter, 5, 6)) {
			return "", life, nil
		}
		_, err := m.ActivateRoot(ctx, ActivateParams{ID: prepared[0].ID, Agents: m.cfg.ConnectedAgents(), Actor: ScheduleActor})
		return "", life, err
	}
	if now.Before(lifePoint(root.NotBefore, root.NotAfter, 1, 2)) {
		return "", life, nil
	}
	if root.Imported {
		return importedNote(root), life, nil
	}
	_, err = m.PrepareRoot(ctx, PrepareParams{Actor: ScheduleActor})
	return "", life, err
}
