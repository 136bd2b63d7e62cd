package agent

import (
	"net"
	"os"
	"strings"
)

// notifier speaks systemd's notify protocol (sd_notify(3)): READY=1 once
// the agent runs, WATCHDOG=1 while it holds its lease. With WatchdogSec=
// on the agent's unit and BindsTo= on the protected service, systemd stops
// the service when the agent stops feeding the watchdog: when it is
// paused, hung, or fenced. That covers the one case the agent cannot cover
// itself, a stopped agent (Pacemaker's SBD watchdog plays the same part).
// Without $NOTIFY_SOCKET it does nothing.
type notifier struct {
	conn *net.UnixConn
}

func newNotifier() *notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return &notifier{}
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return &notifier{}
	}
	return &notifier{conn: conn}
}

// send writes one notify message; a lost one is harmless (the next feed
// comes a tick later).
func (n *notifier) send(msg string) {
	if n.conn != nil {
		_, _ = n.conn.Write([]byte(msg))
	}
}

func (n *notifier) close() {
	if n.conn != nil {
		_ = n.conn.Close()
	}
}
