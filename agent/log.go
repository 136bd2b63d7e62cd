package agent

import (
	"io"
	"runtime/debug"

	"github.com/rs/zerolog"
)

// Version is vigil's version.
const Version = "0.1.0"

var logLevels = map[string]zerolog.Level{
	"trace": zerolog.TraceLevel,
	"debug": zerolog.DebugLevel,
	"info":  zerolog.InfoLevel,
	"warn":  zerolog.WarnLevel,
	"error": zerolog.ErrorLevel,
}

// NewLogger returns the agent's logger writing to w in the configured
// level and format.
func NewLogger(w io.Writer, level, format string) zerolog.Logger {
	// A failure detector's log is read in milliseconds. zerolog keeps the
	// format in a package variable; this is the only place that sets it.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "2006-01-02T15:04:05.000Z07:00", NoColor: true}
	}
	lvl, ok := logLevels[level]
	if !ok {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// VersionString is what `vigil version` prints: vigil's version and the
// serf and memberlist it was built with.
func VersionString() string {
	s := "vigil " + Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		s += " (" + bi.GoVersion
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/hashicorp/serf", "github.com/hashicorp/memberlist":
				s += ", " + d.Path[len("github.com/hashicorp/"):] + " " + d.Version
			}
		}
		s += ")"
	}
	return s
}
