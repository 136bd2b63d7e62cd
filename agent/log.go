package agent

import (
	"bytes"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"

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

// Logs is the agent's log: the logger every part writes to, its main
// output filtered at --log-level, and the monitors (`vigil monitor`, serf's
// RPC monitor) that each see the lines at their own level.
type Logs struct {
	Logger zerolog.Logger

	mu   sync.Mutex
	out  io.Writer
	base zerolog.Level
	subs map[*logSub]struct{}
}

// logSub is one monitor: it gets rendered lines at level and above; a
// line it cannot take at once is dropped and counted.
type logSub struct {
	level   zerolog.Level
	lines   chan string
	dropped int
}

// NewLogger returns the agent's log writing to w in the configured level
// and format.
func NewLogger(w io.Writer, level, format string) *Logs {
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
	l := &Logs{out: w, base: lvl, subs: map[*logSub]struct{}{}}
	// The logger passes every level; zerolog's global level drops, before
	// anything is formatted, what neither the output nor a monitor wants.
	l.Logger = zerolog.New(l).Level(zerolog.TraceLevel).With().Timestamp().Logger()
	l.mu.Lock()
	l.setGlobal()
	l.mu.Unlock()
	return l
}

// setGlobal sets zerolog's global level to the lowest level anybody reads.
// l.mu is held.
func (l *Logs) setGlobal() {
	min := l.base
	for s := range l.subs {
		if s.level < min {
			min = s.level
		}
	}
	zerolog.SetGlobalLevel(min)
}

// Write is zerolog's plain write, used only by events without a level.
func (l *Logs) Write(p []byte) (int, error) { return l.WriteLevel(zerolog.NoLevel, p) }

// WriteLevel writes a record to the output if it passes --log-level, and
// hands it to each monitor that wants its level.
func (l *Logs) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if level >= l.base || level == zerolog.NoLevel {
		if _, err := l.out.Write(p); err != nil {
			return 0, err
		}
	}
	if len(l.subs) == 0 {
		return len(p), nil
	}
	line := ""
	for s := range l.subs {
		if level < s.level {
			continue
		}
		if line == "" {
			line = renderLine(p)
		}
		select {
		case s.lines <- line:
		default:
			s.dropped++
		}
	}
	return len(p), nil
}

// renderLine turns a JSON record into one text line in the style of
// serf's log: "TIME [LEVEL] message key=value ...".
func renderLine(p []byte) string {
	var b bytes.Buffer
	cw := zerolog.ConsoleWriter{Out: &b, NoColor: true, TimeFormat: "2006-01-02T15:04:05.000Z07:00",
		FormatLevel: func(i any) string {
			s, _ := i.(string)
			switch s {
			case "error", "fatal", "panic":
				s = "ERR"
			}
			return "[" + strings.ToUpper(s) + "]"
		}}
	if _, err := cw.Write(p); err != nil {
		return strings.TrimSpace(string(p))
	}
	return strings.TrimRight(b.String(), "\n")
}

// ParseMonitorLevel reads a monitor's level: vigil's names or serf's
// (TRACE, DEBUG, INFO, WARN, ERR), in any case.
func ParseMonitorLevel(s string) (zerolog.Level, error) {
	low := strings.ToLower(s)
	if low == "err" {
		low = "error"
	}
	if lvl, ok := logLevels[low]; ok {
		return lvl, nil
	}
	return 0, fmt.Errorf("Unknown log level: %s", strings.ToUpper(s))
}

// subscribe adds a monitor at level; the caller reads its lines and calls
// unsubscribe when done.
func (l *Logs) subscribe(level zerolog.Level) *logSub {
	s := &logSub{level: level, lines: make(chan string, 512)}
	l.mu.Lock()
	l.subs[s] = struct{}{}
	l.setGlobal()
	l.mu.Unlock()
	return s
}

// unsubscribe removes a monitor and reports how many lines it missed.
func (l *Logs) unsubscribe(s *logSub) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.subs, s)
	l.setGlobal()
	return s.dropped
}

// SetLevel changes --log-level of the main output.
func (l *Logs) SetLevel(level string) error {
	lvl, ok := logLevels[level]
	if !ok {
		return fmt.Errorf("log level %q: want trace, debug, info, warn or error", level)
	}
	l.mu.Lock()
	l.base = lvl
	l.setGlobal()
	l.mu.Unlock()
	return nil
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
