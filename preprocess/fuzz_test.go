package preprocess

import (
	"testing"
)

// FuzzProcess feeds arbitrary bytes to Process: it must never panic, and
// every error must carry a 4xx status (the bytes are the client's fault,
// never the server's). ProcessMemory must not panic either, must refuse
// what Process refuses from the header with the same error, and must
// bound what Process allocates (checkProcessMemory). Seeds in
// testdata/fuzz/FuzzProcess hold tiny valid PNGs and JPEGs of each kind,
// truncated ones and a size bomb.
func FuzzProcess(f *testing.F) {
	for _, s := range fuzzSetups {
		s.new(f) // validate the configs once
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		for _, s := range fuzzSetups {
			// A fresh Preprocessor, so with cold pools and caches:
			// what ProcessMemory bounds.
			checkProcessMemory(t, s.String(), s.new(t), img)
		}
	})
}
