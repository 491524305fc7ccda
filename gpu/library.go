package gpu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryEnv is the environment variable naming the ONNX Runtime shared
// library to load when no path is configured.
const LibraryEnv = "INFERD_ORT_LIB"

// The ONNX Runtime environment is process-wide (one per process, by ONNX
// Runtime's design), so the loaded library is the one piece of package
// state: every Model in the process shares it.
var lib struct {
	sync.Mutex
	path    string
	version string
	err     error
	done    bool
}

// LibraryPath resolves which ONNX Runtime library to load: configured when
// not empty, else $INFERD_ORT_LIB, else .deps/ort/libonnxruntime.so.1 beside
// the executable's parent folder or the working directory (where
// `make setup` puts it), else the bare soname for the system's search path.
func LibraryPath(configured string) string {
	if configured != "" {
		return configured
	}
	if p := os.Getenv(LibraryEnv); p != "" {
		return p
	}
	const rel = ".deps/ort/libonnxruntime.so.1"
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(filepath.Dir(exe)))
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	for _, d := range dirs {
		if p := filepath.Join(d, rel); fileExists(p) {
			return p
		}
	}
	return "libonnxruntime.so.1"
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Load loads the ONNX Runtime shared library at path (resolved with
// LibraryPath) and creates the process's ONNX Runtime environment. It is
// safe to call many times: the first call decides, later calls with the same
// or an empty path return its result, and a later call naming another
// library is an error. It returns the version of the loaded runtime.
func Load(path string) (version string, err error) {
	path = LibraryPath(path)
	lib.Lock()
	defer lib.Unlock()
	if lib.done {
		if lib.err == nil && path != lib.path {
			return lib.version, fmt.Errorf("%w: %s already loaded, cannot also load %s in one process", ErrLibrary, lib.path, path)
		}
		return lib.version, lib.err
	}
	lib.done, lib.path = true, path
	lib.version, lib.err = load(path)
	if lib.err != nil {
		// A failed load may be retried with another path.
		lib.done = false
	}
	return lib.version, lib.err
}

func load(path string) (string, error) {
	const fix = "run `make setup` or point runtime.library (or " + LibraryEnv + ") at an ONNX Runtime 1.24+ libonnxruntime.so"
	if strings.Contains(path, "/") && !fileExists(path) {
		return "", fmt.Errorf("%w: %s not found: %s", ErrLibrary, path, fix)
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("%w: cannot load %s (%v): %s", ErrLibrary, path, lowerFirst(err.Error()), fix)
	}
	_ = ort.DisableTelemetry()
	return ort.GetVersion(), nil
}

// lowerFirst makes a third-party message read as part of ours.
func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
