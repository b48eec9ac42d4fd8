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

// scheduleState is what the schedule remembers between looks.
type scheduleState struct {
	next time.Time // when to look next
	note string    // the last reason for waiting that was logged
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
	m.schedule.next = now.Add(min(scheduleEvery, max(life/100, checkInterval)))
	switch {
	case err != nil && errors.Is(err, ErrUnsafe):
		note = err.Error()
	case err != nil:
		if ctx.Err() == nil {
			m.log.Error("automatic root schedule", logError, err)
		}
		return
	}
	if note != "" && note != m.schedule.note {
		m.log.Info("automatic root schedule is waiting", "reason", note)
	}
	m.schedule.note = note
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
		return "root " + root.ID + " was imported from your PKI: prepare its successor with signet root prepare --from-file", life, nil
	}
	_, err = m.PrepareRoot(ctx, PrepareParams{Actor: ScheduleActor})
	return "", life, err
}
