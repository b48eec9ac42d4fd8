package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// NewLogger builds the process logger from the log_level and log_format
// settings.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log_level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log_format %q: use text or json", format)
}

// LogShutdown logs "shutting down" with the reason (the signal) once ctx
// ends; the function it returns logs "stopped" when the process is done.
func LogShutdown(ctx context.Context, logger *slog.Logger) func() {
	logged := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		logger.Info("shutting down", logReason, context.Cause(ctx).Error())
		close(logged)
	})
	return func() {
		if !stop() {
			<-logged // in that order
			logger.Info("stopped")
		}
	}
}
