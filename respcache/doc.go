// Package respcache is the response cache of one model: the outputs the
// model computed for an input, kept so that the same input is answered
// without running the model again.
//
// A Key is a keyed BLAKE3 hash (random key per Cache) of everything that
// decides the outputs, each field length-prefixed (Hasher), so a hit
// returns exactly what a miss would have, and a client cannot craft an
// input whose key collides with another client's. BLAKE3 was chosen over
// crypto/sha256 (SHA-NI) because it hashes a 602,112-byte tensor in half
// the time here (bench/results/cache-2026-11-30.md): 187 against 369 µs;
// no unkeyed non-cryptographic hash is used, as a collision would let one
// client poison another's answers.
//
// The entries live in github.com/maypok86/otter/v2, weighed in bytes (the
// outputs plus EntryOverhead) and bounded by Config.MaxBytes, with an
// optional TTL. It was chosen over dgraph-io/ristretto/v2 and
// hashicorp/golang-lru/v2 by the benchmarks kept in
// library_timing_test.go: its hit costs 110-180 ns with no allocation
// (ristretto 275-640 ns and one allocation; golang-lru 150-300 ns, behind
// one mutex), it holds about 140 bytes per entry beyond the payload
// (ristretto 232, golang-lru 254), a Set is visible at once (ristretto
// applies Sets asynchronously and its admission policy may drop them, so
// an answer just computed might not be there for the next
// request), and it weighs entries in bytes (golang-lru bounds a count).
//
// Concurrent misses of one key compute once (Cache.Do, with
// golang.org/x/sync/singleflight): the first caller computes, the others
// wait and share its entry. A failed computation is not stored, and the
// callers that waited on it compute on their own, so each gets the answer
// (or the error) its own request would have had: a leader's short timeout
// or low priority never fails a follower.
//
// The cache's memory is outside the server's per-request memory budget
// (server.memory_limit) but bounded by Config.MaxBytes.
package respcache
