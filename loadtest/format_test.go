package loadtest

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/loadtest/testserver"
)

// TestFormatsParseBack writes one real report in every format and reads
// each back.
func TestFormatsParseBack(t *testing.T) {
	url := testserver.Start(t)
	rep, err := Config{URL: url, Model: "tiny", Endpoint: Classify, Concurrency: 2, Duration: 300 * time.Millisecond}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{FormatJSON, func(t *testing.T, out string) {
			var got Report
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			if got.Requests != rep.Requests || got.Latency != rep.Latency || got.Server == nil ||
				got.Server.MeanBatch != rep.Server.MeanBatch {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, *rep)
			}
		}},
		{FormatCSV, func(t *testing.T, out string) {
			rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || len(rows[0]) != len(CSVHeader) || len(rows[1]) != len(CSVHeader) {
				t.Fatalf("rows %q", rows)
			}
			col := map[string]string{}
			for i, h := range rows[0] {
				col[h] = rows[1][i]
			}
			if col["concurrency"] != "2" || col["success"] != "1.00000" || col["server_mean_batch"] == "" {
				t.Errorf("row %v", col)
			}
		}},
		{FormatText, func(t *testing.T, out string) {
			for _, prefix := range []string{"Target", "Load", "Requests", "Duration", "Latencies", "Bytes In",
				"Bytes Out", "Success", "Status Codes", "Server ", "Server queue", "Server compute", "Server rejected", "Error Set:"} {
				if !strings.Contains(out, "\n"+prefix) && !strings.HasPrefix(out, prefix) {
					t.Errorf("no line starting %q in\n%s", prefix, out)
				}
			}
			if !strings.Contains(out, "100.00%") || !strings.Contains(out, "200:") || strings.Contains(out, "Server note") {
				t.Errorf("text:\n%s", out)
			}
			// A view that saw a third of the answers says so, and says
			// it is one replica's when the answers name three (HAProxy
			// spreading the load); answers that never came (status 0)
			// are not counted against it.
			part := *rep
			view := *rep.Server
			view.Requests = float64(rep.Requests) / 3
			part.Server = &view
			for _, tt := range []struct {
				replicas int
				want     string
			}{
				{1, "the server view counted 33% of the answers: other servers"},
				{3, "3 replicas answered (X-Inferd-Replica) and the view is one replica's: it counted 33%"},
			} {
				part.Replicas = tt.replicas
				var b bytes.Buffer
				part.WriteText(&b)
				if !strings.Contains(b.String(), "Server note") || !strings.Contains(b.String(), tt.want) {
					t.Errorf("%d replicas, a third of the answers counted: want note %q in\n%s", tt.replicas, tt.want, b.String())
				}
			}
			part.Replicas = 1
			part.StatusCodes = map[string]int{"0": int(rep.Requests) - int(view.Requests), "200": int(view.Requests)}
			var b bytes.Buffer
			part.WriteText(&b)
			if strings.Contains(b.String(), "Server note") {
				t.Errorf("a note although the server counted every answer:\n%s", b.String())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := rep.Write(&buf, tt.format); err != nil {
				t.Fatal(err)
			}
			tt.check(t, buf.String())
		})
	}
	if err := rep.Write(&bytes.Buffer{}, "yaml"); err == nil {
		t.Error("format yaml accepted")
	}
}
