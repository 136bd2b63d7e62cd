package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium is the headless browser `make testdeps` installs (Debian's
// chromium). Where it is missing the test fails when it could have been
// installed (root, as CI runs) and skips otherwise.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getuid() == 0 {
		t.Fatal("no chromium: run make testdeps (it installs Debian's chromium)")
	}
	t.Skip("no chromium, and not root to install it: run make testdeps as root")
	return ""
}

// browse loads url in headless Chromium, lets its scripts run for a few
// seconds of virtual time, and returns the DOM; with shot set it also
// writes a screenshot there.
func browse(t *testing.T, bin, url, shot string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=4000", "--window-size=1280,1400"}
	if shot != "" {
		args = append(args, "--screenshot="+shot)
	} else {
		args = append(args, "--dump-dom")
	}
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chromium: %v: %s", err, lastBytes(errb.String(), 1000))
	}
	return out.String(), nil
}

var memberRow = regexp.MustCompile(`<tr data-member="([^"]+)" data-status="([^"]+)"`)

// The dashboard at / shows the members, then a killed one as failed with
// the evidence that convicted it, in a real browser.
func TestDashboardInChromium(t *testing.T) {
	bin := chromium(t)
	_, ns := startThree(t)
	n1, n3 := ns[0], ns[2]
	url := "http://" + n1.ip + ":7947/"
	statuses := func(dom string) map[string]string {
		st := map[string]string{}
		for _, m := range memberRow.FindAllStringSubmatch(dom, -1) {
			st[m[1]] = m[2]
		}
		return st
	}
	waitFor(t, 120*time.Second, "the dashboard shows three alive members", func() error {
		dom, err := browse(t, bin, url, "")
		if err != nil {
			return err
		}
		// In the view: alive, or suspect (n1's own doubt, not agreed; a
		// browser starting on two busy cores can cause it).
		st := statuses(dom)
		if !strings.Contains(dom, `data-ready="1"`) || len(st) != 3 || !inView(st["n1"]) || !inView(st["n2"]) || !inView(st["n3"]) {
			return fmt.Errorf("members %v in:\n%s", st, lastBytes(dom, 3000))
		}
		if !strings.Contains(dom, `data-peer="`) || !strings.Contains(dom, "<polyline") {
			return fmt.Errorf("no peer chart:\n%s", lastBytes(dom, 3000))
		}
		return nil
	})
	n3.kill()
	waitFor(t, 120*time.Second, "the dashboard shows n3 failed, with its evidence", func() error {
		dom, err := browse(t, bin, url, "")
		if err != nil {
			return err
		}
		if st := statuses(dom); st["n3"] != "failed" {
			return fmt.Errorf("n3 is %q", st["n3"])
		}
		i := strings.Index(dom, `class="verdict" data-node="n3"`)
		if i < 0 || !strings.Contains(dom[i:], `data-role="acceptor"`) || !strings.Contains(dom[i:], `data-role="proposer"`) {
			return fmt.Errorf("no evidence for n3:\n%s", lastBytes(dom, 4000))
		}
		return nil
	})
	// VIGIL_SCREENSHOT=FILE keeps a picture of it (README's).
	if shot := os.Getenv("VIGIL_SCREENSHOT"); shot != "" {
		abs, _ := filepath.Abs(shot)
		if _, err := browse(t, bin, url, abs); err != nil {
			t.Fatal(err)
		}
	}
}
