// Package attack is a test-only suite that attacks the real inferd binary
// the way an outside client on loopback can (issue 9, "No request may
// multiply memory, and overload is shed at the door"), and proves the
// bounds that the server keeps.
//
// It attacks:
//   - the JSON infer parser with 10 million numbers, plain (20 MB) and
//     gzipped (about 20 KB);
//   - the body reader with 60 connections that declare a 50 MB
//     Content-Length and then trickle;
//   - decompression with gzip bombs: to GET /v2/health/live, to the infer
//     route, and 16 at once;
//   - image decoding with a CMYK progressive JPEG and a 16-bit PNG just
//     under server.max_pixels, one and four at once;
//   - the connection slots: one client over
//     server.max_connections_per_client, many clients over
//     server.max_connections, while health checks must still be answered;
//   - memory after a spike, which must go back to the OS;
//   - startup: a loading model answers 503 with Retry-After, not 404;
//   - the transport: malformed requests, a 20 KB header (431), a 20 KB URL
//     (414), bare-LF line endings;
//   - overload: open-loop load at 2x, 5x and 10x the measured capacity,
//     whose excess must get a fast 503 rather than a 504 after a wait.
//
// How it measures: every case starts its own inferd process (built from
// the checkout with go build, or $INFERD_ATTACK_BIN) from a config file the
// test writes, serving the generated tiny model (and the generated ResNet50
// for startup and overload). Memory is the server process's own, read from
// /proc/PID/status: the peak (VmHWM) is reset with clear_refs before each
// case and read after it, and VmRSS is also sampled every 10 ms, which
// doubles as a watchdog that kills a server passing $INFERD_ATTACK_RSS_CAP_MB
// (default 6144). Each case asserts, naming the bound, the figure and the
// issue item when one fails:
//   - no request raises the peak RSS by more than 4x its decompressed size
//     (the bytes the server may have to hold for it) plus 64 MB;
//   - the whole attack keeps the peak under the RSS before it plus
//     server.memory_limit (512 MiB here) plus 64 MB;
//   - a control request (GET /v2/health/ready and a small infer, both 200)
//     is answered while the attack runs and after it;
//   - the status codes the case allows.
//
// The suite is skipped under -short and without ONNX Runtime. Environment:
//
//	INFERD_ATTACK_BIN=PATH     attack this binary instead of building one; the
//	                           config then leaves out the keys an older
//	                           inferd does not know (memory_limit,
//	                           max_connections_per_client)
//	INFERD_ATTACK_REPORT=FILE  append one markdown table row per case to FILE
//	                           and log failed bounds instead of failing
//	INFERD_ATTACK_RSS_CAP_MB=N kill a server whose RSS passes N MB (6144)
//	INFERD_ATTACK_OVERLOAD_BATCHER=YAML
//	                           more batcher keys for the overload test's
//	                           model, e.g. "latency_target: 2s" (the adaptive
//	                           window) or "max_delay: 10ms"
package attack
