package testbed

import (
	"os"
	"path/filepath"
	"testing"
)

// ORTLibEnv names the ONNX Runtime library for inferd and its tests. It is
// gpu.LibraryEnv, spelled again because gpu's own tests import testbed.
const ORTLibEnv = "INFERD_ORT_LIB"

// ORTLibrary finds the ONNX Runtime library for tests: $INFERD_ORT_LIB,
// else the checkout's .deps/ort/libonnxruntime.so.1 that make setup
// installs, which it then exports as $INFERD_ORT_LIB so that the code under
// test loads the same file. It returns "" when there is neither. A set
// variable is returned as it is, even if the file is missing: loading it
// then fails the test with the loader's own error.
func ORTLibrary() string {
	if p := os.Getenv(ORTLibEnv); p != "" {
		return p
	}
	p := filepath.Join(RepoRoot(), ".deps", "ort", "libonnxruntime.so.1")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	os.Setenv(ORTLibEnv, p)
	return p
}

// NeedORT returns the ONNX Runtime library's path, or skips the test (fails
// it under $INFERD_REQUIRE_TOOLS) when there is none.
func NeedORT(t testing.TB) string {
	t.Helper()
	p := ORTLibrary()
	if p == "" {
		Missing(t, "ONNX Runtime not found ($%s, .deps/ort): run make setup", ORTLibEnv)
	}
	return p
}
