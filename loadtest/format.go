package loadtest

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats a report can be written in.
const (
	FormatText = "text"
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// WriteText writes r like `vegeta report`, with the server's view after.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.StripEscape)
	l := r.Latency
	fmt.Fprintf(tw, "Target\t%s\n", r.Target)
	fmt.Fprintf(tw, "Load\t%s\n", r.Mode)
	fmt.Fprintf(tw, "Requests\t[total, rate, throughput]\t%d, %.2f, %.2f\n", r.Requests, r.Rate, r.Throughput)
	fmt.Fprintf(tw, "Duration\t[total, attack, wait]\t%s, %s, %s\n", r.Duration+r.Wait, r.Duration, r.Wait)
	fmt.Fprintf(tw, "Latencies\t[min, mean, 50, 90, 95, 99, max]\t%s, %s, %s, %s, %s, %s, %s\n",
		l.Min, l.Mean, l.P50, l.P90, l.P95, l.P99, l.Max)
	fmt.Fprintf(tw, "Bytes In\t[total, mean]\t%d, %.2f\n", r.BytesIn, perRequest(r.BytesIn, r.Requests))
	fmt.Fprintf(tw, "Bytes Out\t[total, mean]\t%d, %.2f\n", r.BytesOut, perRequest(r.BytesOut, r.Requests))
	fmt.Fprintf(tw, "Success\t[ratio]\t%.2f%%\n", 100*r.Success)
	fmt.Fprintf(tw, "Status Codes\t[code:count]\t%s\n", joinCounts(r.StatusCodes, "%s:%d"))
	if s := r.Server; s != nil {
		fmt.Fprintf(tw, "Server (%s)\t[requests, batches, mean batch]\t%.0f, %.0f, %.2f\n", s.Source, s.Requests, s.Batches, s.MeanBatch)
		if s.Source == SourceStatistics {
			fmt.Fprintf(tw, "Server queue\t[mean]\t%s\n", round(s.QueueMean))
			fmt.Fprintf(tw, "Server compute\t[mean]\t%s\n", round(s.ComputeMean))
		} else {
			fmt.Fprintf(tw, "Server queue\t[mean, 50, 99]\t%s, %s, %s\n", round(s.QueueMean), round(s.QueueP50), round(s.QueueP99))
			fmt.Fprintf(tw, "Server compute\t[mean, 50, 99]\t%s, %s, %s\n", round(s.ComputeMean), round(s.ComputeP50), round(s.ComputeP99))
		}
		fmt.Fprintf(tw, "Server rejected\t[reason:count]\t%s\n", joinCounts(s.Rejected, "%s:%.0f"))
		if note := r.serverNote(); note != "" {
			fmt.Fprintf(tw, "Server note\t\t%s\n", note)
		}
	} else if r.ServerError != "" {
		fmt.Fprintf(tw, "Server\t\tno view: %s\n", r.ServerError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "Error Set:")
	for _, e := range r.Errors {
		if _, err = fmt.Fprintln(w, e); err != nil {
			return err
		}
	}
	return err
}

// serverNote says why the server view counted fewer requests than the
// server answered, when it did: "" when it counted 90% or more. Requests
// without an answer (status 0) never reached a server and are left out.
func (r *Report) serverNote() string {
	answered := float64(r.Requests) - float64(r.StatusCodes["0"])
	s := r.Server
	if s == nil || answered <= 0 || s.Requests >= 0.9*answered {
		return ""
	}
	share := 100 * s.Requests / answered
	if r.Replicas > 1 {
		return fmt.Sprintf("%d replicas answered (%s) and the view is one replica's: it counted %.0f%% of the answers", r.Replicas, replicaHeader, share)
	}
	return fmt.Sprintf("the server view counted %.0f%% of the answers: other servers (a load balancer's other replicas?) answered the rest", share)
}

func perRequest(total, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(total) / float64(n)
}

func joinCounts[V int | float64](m map[string]V, format string) string {
	parts := []string{}
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf(format, k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// WriteJSON writes r as one JSON object on one line; durations are in
// nanoseconds (fields ending _ns).
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// CSVHeader is the header row of WriteCSV; latencies are in milliseconds.
// The errors column, the only one whose text may hold commas, is last.
var CSVHeader = []string{
	"mode", "target_rate", "concurrency", "requests", "rate", "throughput", "success",
	"mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "status_codes",
	"server_requests", "server_batches", "server_mean_batch", "server_queue_p50_ms", "server_queue_p99_ms",
	"server_compute_p50_ms", "server_compute_p99_ms", "server_rejected",
	"server_queue_mean_ms", "server_compute_mean_ms", "server_source", "errors",
}

// CSVRecord is r as one row under CSVHeader.
func (r *Report) CSVRecord() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }
	l := r.Latency
	rec := []string{
		r.Mode, f(r.TargetRate), strconv.Itoa(r.Concurrency), strconv.FormatUint(r.Requests, 10),
		strconv.FormatFloat(r.Rate, 'f', 3, 64), strconv.FormatFloat(r.Throughput, 'f', 3, 64), strconv.FormatFloat(r.Success, 'f', 5, 64),
		ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P95), ms(l.P99), ms(l.Max),
		joinCounts(r.StatusCodes, "%s:%d"),
	}
	if s := r.Server; s != nil {
		rec = append(rec, f(s.Requests), f(s.Batches), strconv.FormatFloat(s.MeanBatch, 'f', 3, 64),
			ms(s.QueueP50), ms(s.QueueP99), ms(s.ComputeP50), ms(s.ComputeP99), joinCounts(s.Rejected, "%s:%.0f"),
			ms(s.QueueMean), ms(s.ComputeMean), s.Source)
	} else {
		rec = append(rec, "", "", "", "", "", "", "", "", "", "", "")
	}
	return append(rec, strings.Join(r.Errors, "; "))
}

// WriteCSV writes the header and r's row.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	cw.Write(r.CSVRecord())
	cw.Flush()
	return cw.Error()
}

// Write writes r in format (text, json or csv).
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case FormatText, "":
		return r.WriteText(w)
	case FormatJSON:
		return r.WriteJSON(w)
	case FormatCSV:
		return r.WriteCSV(w)
	}
	return fmt.Errorf("format %q: want text, json or csv", format)
}
