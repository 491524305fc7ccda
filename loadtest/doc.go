// Package loadtest drives load at an inferd (or any KServe v2) server and
// reports what the client saw beside what the server says about the same
// window. It is built on vegeta's attack library: open-loop runs at a
// constant, ramped or sinusoidal rate use vegeta's pacers, closed-loop runs
// at a fixed concurrency use vegeta's rate 0 with as many workers as the
// concurrency, and raw results are vegeta's own gob encoding, one stream
// for a whole sweep or SLO search with each run under its own attack name,
// so `vegeta report`, `vegeta plot` and `vegeta encode` read them whole.
//
// The targets are the image classification endpoint (image files, or
// generated JPEGs), KServe v2 inference in JSON and with the binary tensor
// extension (tensor from a raw file, or generated from the shapes the
// server's model metadata gives), and /recognize (the server's first model).
//
// The server's side of the window comes from inferd's Prometheus metrics
// (batch size, queue and compute quantiles, rejections), or, on servers
// without them such as Triton, from the statistics extension
// (/v2/models/M/stats: means).
//
// Config.Run runs one attack; Sweep runs one per rate or concurrency; SLO
// searches for the highest rate that meets a p99 latency and error target.
package loadtest
