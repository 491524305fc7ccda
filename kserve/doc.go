// Package kserve parses and encodes the Open Inference Protocol (KServe
// v2) over HTTP/REST, with Triton's binary tensor data extension:
//
//   - ParseInferRequest reads an inference request body, JSON or JSON
//     header plus raw tensor bytes (Inference-Header-Content-Length), into
//     a reusable InferRequest whose tensors hold little-endian bytes.
//   - AppendInferResponse writes a response, JSON data or binary outputs
//     after the JSON header.
//   - ModelMetadata and ServerMetadata are the metadata documents;
//     AppendError writes the {"error": ...} body.
//
// The package knows nothing of HTTP servers or models: it checks that a
// request is well formed and self-consistent (shapes against data,
// datatypes, binary sizes), and leaves checking it against the model to
// the caller. Its errors carry the HTTP status to answer with (see Error).
//
// Datatypes are the protocol's fixed-size ones: BOOL, UINT8..UINT64,
// INT8..INT64, FP16, FP32, FP64. BYTES (strings) is rejected in requests;
// responses can carry it (the classification extension's strings).
package kserve
