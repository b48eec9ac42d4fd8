package kubeapi

import "context"

// PodSource lists and watches pods (Client implements it).
type PodSource interface {
	ListPods(ctx context.Context, fieldSelector string) (*PodList, error)
	WatchPods(ctx context.Context, fieldSelector, resourceVersion string, fn func(PodEvent) error) error
}

// PodHandler receives what ListWatchPods sees: the full list (replace
// everything held), then each change.
type PodHandler struct {
	Replace func([]Pod)
	Event   func(PodEvent)
}

// ListWatchPods lists the pods matching fieldSelector, hands them to
// h.Replace, then watches from the list's version, handing each change to
// h.Event, resuming when the server ends a watch. It returns nil when ctx
// ends or the watch's version is too old (410 Gone: the caller lists
// again, at once), and the error otherwise (the caller retries with
// backoff). listed is called after each successful list.
func ListWatchPods(ctx context.Context, src PodSource, fieldSelector string, h PodHandler, listed func(n int)) error {
	list, err := src.ListPods(ctx, fieldSelector)
	if err != nil {
		return err
	}
	h.Replace(list.Items)
	if listed != nil {
		listed(len(list.Items))
	}
	rv := list.Metadata.ResourceVersion
	for ctx.Err() == nil {
		err := src.WatchPods(ctx, fieldSelector, rv, func(ev PodEvent) error {
			if ev.Pod.Metadata.ResourceVersion != "" {
				rv = ev.Pod.Metadata.ResourceVersion
			}
			if ev.Type != EventBookmark {
				h.Event(ev)
			}
			return nil
		})
		switch {
		case IsGone(err):
			return nil
		case err != nil:
			return err
		}
	}
	return nil
}
