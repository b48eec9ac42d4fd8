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
// fall months apart, and a refused retirement reads every entry's current
// SVID, so once a minute is often enough and cheap enough; roots that live less
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
	auths, err := m.readAuthorities(ctx)
	if err != nil {
		return st, err
	}
	m.mu.Lock()
	st.Waiting = m.schedule.note
	m.mu.Unlock()
	step, ok := nextRootStep(auths)
	switch {
	case !ok:
	case step.action == "":
		st.Waiting = importedNote(step.root)
	case step.target != nil:
		st.NextStep, st.NextStepAt = step.action+" "+step.target.ID, step.due
	default:
		st.NextStep, st.NextStepAt = step.action, step.due
	}
	return st, nil
}

// rootStep is the automatic schedule's next step for a set of authorities.
type rootStep struct {
	// action is "prepare", "activate" or "retire"; empty when the active
	// root is imported and is left to the operator.
	action string
	root   *store.Authority // the active root, which times the schedule
	target *store.Authority // the root activated or retired
	due    time.Time        // zero: as soon as the step's checks allow
}

// nextRootStep decides the schedule's next step (see scheduleRoots); ok is
// false without a single active root to time it by.
func nextRootStep(auths []*store.Authority) (step rootStep, ok bool) {
	active := rootsIn(auths, store.StateActive)
	if len(active) != 1 {
		return rootStep{}, false
	}
	root := active[0]
	step.root = root
	switch retiring, prepared := rootsIn(auths, store.StateRetiring), rootsIn(auths, store.StatePrepared); {
	case len(retiring) > 0:
		step.action, step.target = "retire", retiring[0]
	case len(prepared) > 0:
		step.action, step.target, step.due = "activate", prepared[0], lifePoint(root.NotBefore, root.NotAfter, 5, 6)
	case root.Imported:
		step.due = lifePoint(root.NotBefore, root.NotAfter, 1, 2)
	default:
		step.action, step.due = "prepare", lifePoint(root.NotBefore, root.NotAfter, 1, 2)
	}
	return step, true
}

func (m *Manager) readAuthorities(ctx context.Context) (auths []*store.Authority, err error) {
	err = m.cfg.Store.View(ctx, func(tx store.Tx) error {
		auths, err = tx.ListAuthorities()
		return err
	})
	if err != nil {
		return nil, wrapErr("reading authorities: %w", err)
	}
	return auths, nil
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
	case errors.Is(err, ErrUnsafe):
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
		m.log.Info("automatic root schedule is waiting", logReason, note)
	}
}

// scheduleStep takes the step due at now, if any. It returns why it is
// waiting when a step is due but cannot be taken yet, and the lifetime of
// the active root.
func (m *Manager) scheduleStep(ctx context.Context, now time.Time) (waiting string, life time.Duration, err error) {
	auths, err := m.readAuthorities(ctx)
	if err != nil {
		return "", 0, err
	}
	step, ok := nextRootStep(auths)
	if !ok {
		return "", 0, nil // nothing to time the schedule by
	}
	life = step.root.NotAfter.Sub(step.root.NotBefore)
	if now.Before(step.due) {
		return "", life, nil
	}
	switch step.action {
	case "retire":
		_, err = m.RetireRoot(ctx, RetireParams{ID: step.target.ID, Actor: ScheduleActor})
	case "activate":
		_, err = m.ActivateRoot(ctx, ActivateParams{ID: step.target.ID, Agents: m.cfg.ConnectedAgents(), Actor: ScheduleActor})
	case "prepare":
		_, err = m.PrepareRoot(ctx, PrepareParams{Actor: ScheduleActor})
	default:
		return importedNote(step.root), life, nil
	}
	return "", life, err
}
