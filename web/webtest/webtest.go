// Package webtest drives inferd's web page in a real browser, for tests:
// Debian's chromium, headless, over the DevTools protocol (chromedp). It
// records everything the page writes to its console (console calls,
// uncaught exceptions, the browser log's failed requests) so that a test
// can fail on them.
//
// Only tests import it: the inferd binary does not link chromedp.
package webtest

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/inferd/inferd/internal/testbed"
)

// ActionTimeout bounds each action a test runs through a Browser.
const ActionTimeout = 15 * time.Second

// Browser is one headless chromium with one tab.
type Browser struct {
	ctx context.Context // the tab's

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// Chromium finds the browser: $INFERD_CHROMIUM, else chromium on PATH.
// Without it the test is skipped with the command that installs it, or
// fails under $INFERD_REQUIRE_TOOLS.
func Chromium(t testing.TB) string {
	t.Helper()
	return testbed.Tool(t, "INFERD_CHROMIUM", "", "chromium", true)
}

// Start starts a headless chromium with a window of width x height and
// opens a tab; both close when the test ends. Tests run as root here, so
// the sandbox is off; there is no GPU, so it is not asked for.
func Start(t testing.TB, width, height int) *Browser {
	t.Helper()
	bin := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser, bound to ctx (no timeout).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	b := &Browser{ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// Context is the tab's context, for chromedp calls of a test's own.
func (b *Browser) Context() context.Context { return b.ctx }

// Do runs steps in the tab, failing the test on an error or after
// ActionTimeout.
func (b *Browser) Do(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v%s", err, b.report())
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value into a T.
func Eval[T any](t testing.TB, b *Browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: evaluating %s: %v%s", expr, err, b.report())
	}
	return v
}

// WaitFor waits until the JavaScript expression is truthy, failing the
// test with what is wanted after d.
func (b *Browser) WaitFor(t testing.TB, d time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		ctx, cancel := context.WithTimeout(b.ctx, left+time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(left)))
		cancel()
		if err == nil {
			return
		}
		// A page that was still loading: its script context went away
		// under the poll. Poll the new one.
		if gone(err) && time.Now().Before(deadline) {
			continue
		}
		t.Fatalf("browser: waiting %s for %s (%s): %v%s", d, what, expr, err, b.report())
	}
}

// gone reports whether err says the page's JavaScript context went away
// (a navigation) during an evaluation.
func gone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find context with specified id") || strings.Contains(s, "Execution context was destroyed")
}

// Screenshot writes a PNG of the whole page to path.
func (b *Browser) Screenshot(t testing.TB, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}

// Messages returns how many console messages there are so far, for a
// later Problems(since).
func (b *Browser) Messages() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.messages)
}

// Problems returns the messages from the since-th on that are errors or
// exceptions: console.error calls, uncaught exceptions and unhandled
// rejections, and the browser log's errors (a failed request, a blocked
// script or style, a CSP violation), each as "type: text (url:line)".
func (b *Browser) Problems(since int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.messages[min(since, len(b.messages)):] {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			s := string(m.Type) + ": " + m.Text
			if m.Source != "" {
				s += " [" + m.Source + "]"
			}
			if m.URL != "" {
				s += " (" + m.URL + ")"
			}
			out = append(out, s)
		}
	}
	return out
}

// report is the console so far, for a failure message.
func (b *Browser) report() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.messages) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("\nconsole:")
	for _, m := range b.messages {
		sb.WriteString("\n  " + m.String())
	}
	return sb.String()
}
