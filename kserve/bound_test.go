//go:build !race

package kserve

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/httperr"
)

// allocated returns the bytes f allocates on the heap (exact: ReadMemStats
// flushes the per-P caches).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocBound is what ParseInferRequest may allocate for a body: 4 bytes
// per byte (FP64 read from "0,", 8 bytes out per 2 in) plus 64 KiB.
func allocBound(body []byte) uint64 { return 4*uint64(len(body)) + 64<<10 }

// TestParseHugeDataSmallShape is issue 9's report: 10 million numbers
// for a shape of 2. The old parser built the whole tree first (4 GB, 11
// s); this one must refuse it having allocated almost nothing.
func TestParseHugeDataSmallShape(t *testing.T) {
	const n = 10_000_000
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[` +
		strings.Repeat("0,", n-1) + `0]}]}`)
	var r InferRequest
	var err error
	start := time.Now()
	got := allocated(func() { err = ParseInferRequest(&r, body, -1) })
	elapsed := time.Since(start)
	checkStatus(t, err, `input "x": data has 10000000 elements, shape [1,2] needs 2`)
	if got > 1<<20 {
		t.Errorf("allocated %d bytes for a %d-byte body, want under 1 MiB", got, len(body))
	}
	if elapsed > time.Second {
		t.Errorf("took %v, want well under a second", elapsed)
	}
	t.Logf("%d-byte body refused in %v, %d bytes allocated", len(body), elapsed, got)
}

func checkStatus(t *testing.T, err error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted")
	}
	if e, ok := err.(*httperr.Error); !ok || e.Status != 400 {
		t.Fatalf("error %T %v, want a 400 *httperr.Error", err, err)
	}
	if msg != "" && err.Error() != msg {
		t.Errorf("message\n  %.300q\nwant\n  %.300q", err, msg)
	}
}

// input writes one input object.
func input(name, dt, shape, data string) string {
	return `{"name":"` + name + `","datatype":"` + dt + `","shape":` + shape + `,"data":` + data + `}`
}

func request(inputs ...string) string {
	return `{"inputs":[` + strings.Join(inputs, ",") + `]}`
}

// hostileBodies are requests built to make a parser allocate more than
// the body; ok says whether the parse must succeed. Sizes are a few MB:
// enough that a ratio above 4 shows beyond the 64 KiB slack.
func hostileBodies() []struct {
	name string
	body []byte
	hl   int
	ok   bool
} {
	const mb = 1 << 20
	type hb = struct {
		name string
		body []byte
		hl   int
		ok   bool
	}
	var cases []hb
	add := func(name, body string, ok bool) { cases = append(cases, hb{name, []byte(body), -1, ok}) }
	nums := func(elem string, n int) string { return "[" + strings.Repeat(elem+",", n-1) + elem + "]" }

	// Shapes claiming more than the data holds.
	add("huge shape, short data", request(input("x", "FP64", "[1000000000000]", "[1,2,3]")), false)
	add("huge shape, overflowing bytes", request(input("x", "FP64", "[4611686018427387904]", "[1]")), false)
	// The most a shape may claim for its bytes: (len+1)/2 elements of a
	// "data" that is one 0 and spaces. The buffer is allocated (4 bytes
	// per byte: the worst case of the bound), then the count fails.
	{
		inner := "0" + strings.Repeat(" ", 2*mb)
		n := (len(inner) + 1) / 2
		add("plausible shape, whitespace data", request(input("x", "FP64", "["+strconv.Itoa(n)+"]", "["+inner+"]")), false)
	}
	add("FP64 from minimal numbers", request(input("x", "FP64", "[1048576]", nums("0", mb))), true)
	add("INT64 nested from minimal numbers", request(input("x", "INT64", "[524288,2]", nums("[0,0]", mb/2))), true)
	add("FP64 minimal numbers, one short", request(input("x", "FP64", "[1048577]", nums("0", mb))), false)
	// More data than the shape.
	add("long data, small shape", request(input("x", "FP32", "[1,2]", nums("0", 2*mb))), false)
	add("long nested row", request(input("x", "FP32", "[2,2]", "[["+strings.Repeat("0,", mb)+"0],[0,0]]")), false)
	// Nesting.
	add("deep brackets", strings.Repeat("[", 100_000), false)
	add("deep objects in a member", `{"x":`+strings.Repeat(`{"a":`, 100_000), false)
	{
		shape := "[" + strings.Repeat("1,", maxRank-1) + "1]"
		add("data nested maxRank deep", request(input("x", "FP64", shape, strings.Repeat("[", maxRank)+"0"+strings.Repeat("]", maxRank))), true)
		add("shape beyond maxRank", request(input("x", "FP64", "["+strings.Repeat("1,", mb)+"1]", "[0]")), false)
	}
	// Many inputs and outputs.
	{
		var ins []string
		for i := range 40_000 {
			ins = append(ins, input("i"+strconv.Itoa(i), "BOOL", "[]", "[0]"))
		}
		add("many inputs", request(ins...), true)
		add("many inputs, repeated name at the end", request(append(ins, input("i0", "BOOL", "[]", "[0]"))...), false)
		add("many inputs, last one broken", request(append(ins, `{"name":"z"}`)...), false)
		shape := "[" + strings.Repeat("1,", maxRank-1) + "1]"
		var ranked []string
		for i := range 10_000 {
			ranked = append(ranked, input("i"+strconv.Itoa(i), "BOOL", shape, "[0]"))
		}
		add("many inputs of maxRank dimensions", request(ranked...), true)
		add("inputs of numbers", `{"inputs":`+nums("1", mb)+`}`, false)
		add("inputs of empty objects", `{"inputs":`+nums("{}", mb/2)+`}`, false)
	}
	{
		var outs []string
		for i := range 200_000 {
			outs = append(outs, `{"name":"`+strconv.FormatInt(int64(i), 36)+`"}`)
		}
		x := input("x", "UINT8", "[1]", "[1]")
		add("many outputs", `{"inputs":[`+x+`],"outputs":[`+strings.Join(outs, ",")+`]}`, true)
		add("many outputs, repeated name at the end", `{"inputs":[`+x+`],"outputs":[`+strings.Join(outs, ",")+`,{"name":"0"}]}`, false)
		add("outputs of numbers", `{"inputs":[`+x+`],"outputs":`+nums("1", mb)+`}`, false)
	}
	// Long strings, where messages quote them.
	x := input("x", "UINT8", "[1]", "[1]")
	long := strings.Repeat("a", 2*mb)
	add("long id", `{"id":"`+long+`","inputs":[`+x+`]}`, true)
	add("long escaped id", `{"id":"`+strings.Repeat(`\u00e9`, mb/2)+`","inputs":[`+x+`]}`, true)
	add("long name without datatype", request(`{"name":"`+long+`"}`), false)
	add("long escaped name without datatype", request(`{"name":"`+strings.Repeat(`\n`, mb)+`"}`), false)
	add("long datatype", request(`{"name":"x","datatype":"`+long+`"}`), false)
	add("long repeated input name", request(input(long, "UINT8", "[1]", "[1]"), input(long, "UINT8", "[1]", "[1]")), false)
	add("long output name repeated", `{"inputs":[`+x+`],"outputs":[{"name":"`+long+`"},{"name":"`+long+`"}]}`, false)
	add("long number in shape", request(input("x", "FP32", "[1"+strings.Repeat("0", mb)+"]", "[1]")), false)
	add("long number in timeout", `{"parameters":{"timeout":1`+strings.Repeat("0", mb)+`},"inputs":[`+x+`]}`, false)
	add("long FP64 element", request(input("x", "FP64", "[1]", "[0."+strings.Repeat("1", mb)+"]")), true)
	add("long INT64 element", request(input("x", "INT64", "[1]", "[1"+strings.Repeat("0", mb)+"]")), false)
	add("long string element", request(input("x", "FP32", "[1]", `["`+long+`"]`)), false)
	add("unknown members", `{"inputs":[`+x+`],"extra":`+nums(`{"a":[1,"b"]}`, mb/16)+`}`, true)
	add("body is one string", `"`+long+`"`, false)
	// Binary data, copied out of the body once.
	{
		h := `{"inputs":[{"name":"x","datatype":"FP64","shape":[262144],"parameters":{"binary_data_size":2097152}}]}`
		cases = append(cases, hb{"binary tensor", append([]byte(h), make([]byte, 2*mb)...), len(h), true})
		h = `{"inputs":[{"name":"x","datatype":"FP64","shape":[1000000000000],"parameters":{"binary_data_size":8000000000000}}]}`
		cases = append(cases, hb{"binary tensor beyond the body", append([]byte(h), make([]byte, 16)...), len(h), false})
	}
	return cases
}

// TestParseAllocationBound holds every parse of a hostile body, good or
// bad, to 4 bytes allocated per byte of body plus 64 KiB, into a fresh
// InferRequest (the worst case: nothing to reuse).
func TestParseAllocationBound(t *testing.T) {
	for _, tc := range hostileBodies() {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			start := time.Now()
			got := allocated(func() {
				var r InferRequest
				err = ParseInferRequest(&r, tc.body, tc.hl)
			})
			elapsed := time.Since(start)
			if tc.ok && err != nil {
				t.Fatalf("refused: %.300v", err)
			}
			if !tc.ok {
				checkStatus(t, err, "")
				if len(err.Error()) > 4096 {
					t.Errorf("message of %d bytes", len(err.Error()))
				}
			}
			if bound := allocBound(tc.body); got > bound {
				t.Errorf("allocated %d bytes for a %d-byte body (%.2f per byte), bound %d", got, len(tc.body), float64(got)/float64(len(tc.body)), bound)
			}
			if elapsed > 2*time.Second {
				t.Errorf("took %v", elapsed)
			}
			t.Logf("%d bytes, %d allocated (%.2f per byte), %v: %.120v", len(tc.body), got, float64(got)/float64(len(tc.body)), elapsed, err)
		})
	}
}

// TestParseAllocationBoundSeeds holds the fuzz seeds to the bound too,
// measured exactly (the fuzz target measures loosely, see fuzz_test.go).
func TestParseAllocationBoundSeeds(t *testing.T) {
	for _, s := range fuzzSeeds(t) {
		got := allocated(func() {
			var r InferRequest
			_ = ParseInferRequest(&r, s.body, s.hl)
		})
		if bound := allocBound(s.body); got > bound {
			t.Errorf("%s: allocated %d bytes for a %d-byte body, bound %d", s.name, got, len(s.body), bound)
		}
	}
}

// TestParseDeepBracketsQuick: 100,000 opening brackets are refused at
// the nesting limit, without recursing 100,000 deep.
func TestParseDeepBracketsQuick(t *testing.T) {
	body := bytes.Repeat([]byte("["), 100_000)
	var r InferRequest
	start := time.Now()
	err := ParseInferRequest(&r, body, -1)
	checkStatus(t, err, "malformed request JSON: cannot parse JSON: arrays and objects nested deeper than 128 levels at offset 128")
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("took %v", d)
	}
}
