// Command loadtest drives load at an inferd server and reports the
// client's latency and throughput beside the server's batching figures.
//
//	loadtest attack -url http://127.0.0.1:8000 -model tiny -endpoint classify|recognize|infer-json|infer-binary
//	        [-images PATH | -tensor FILE] [-rate 100 | -concurrency 8] [-duration 10s]
//	        [-pacer constant|ramp|sine] [-output results.bin] [-format text|json|csv] [-plot plot.html]
//	        [-header 'Authorization: Bearer KEY' ...] [-cacert ca.pem]
//	        [-protocol http|grpc] [-grpc-addr host:8001] [-grpc-conns 4]
//	loadtest sweep ... -rates 10,20,40 | -concurrencies 1,8,32
//	loadtest slo -p99 100ms -max-error-rate 0.01 ...
//
// The results file is vegeta's gob encoding, one stream however many runs
// a sweep makes: `vegeta report results.bin`, `vegeta plot results.bin`
// and `vegeta encode results.bin` read it whole. A sweep's points are
// told apart by vegeta's attack name, the mode of the point's row
// ("closed concurrency 8"): plot draws a series per point, encode's
// "attack" field names each result's point, report sums them all.
//
// -protocol grpc sends the infer-binary load as KServe v2 gRPC ModelInfer
// calls (raw_input_contents) to -grpc-addr; results, reports, sweeps and
// SLO searches are as over HTTP, a call's gRPC code mapped to an HTTP
// status (NotFound 404, ResourceExhausted 429, Unavailable 503), and the
// server view still comes from -url's /metrics.
//
// -endpoint recognize loads the server's first model (/recognize names
// none) and reads that model's server view; -model, if given, must name it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the run failed: unreachable target, unknown model, bad file
	exitUsage = 2 // bad flags or arguments
)

const usage = `usage: loadtest attack|sweep|slo [flags]

  attack  one run at a rate (open loop) or a concurrency (closed loop)
  sweep   one run per rate (-rates) or concurrency (-concurrencies), a row each
  slo     the highest rate whose p99 meets -p99 with errors under -max-error-rate

Run "loadtest COMMAND -h" for a command's flags.
`

// run is the whole command, testable without a process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var cmd func(context.Context, []string, io.Writer, io.Writer) int
	switch args[0] {
	case "attack":
		cmd = attack
	case "sweep":
		cmd = sweep
	case "slo":
		cmd = slo
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "loadtest: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// fail prints err and returns the exit code for a failed run.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "loadtest:", err)
	return exitError
}

// isTerminal reports whether w is a terminal, where a progress line helps.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
