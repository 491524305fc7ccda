package gpu

// Pinned host buffers (cuda.pinned_memory). On a cuda device each
// instance's input and output buffers come from cudaHostAlloc, so the CUDA
// provider's copies to and from the device are direct DMA from them instead
// of going through a staging buffer of the driver. The CUDA runtime is not
// linked: it is the one the CUDA provider already loaded, found with dlopen
// and called through the small C trampolines below, so the binary still
// builds and runs where there is no CUDA at all.
//
// The memory is C memory seen from Go as a []byte (unsafe.Slice): the
// garbage collector neither scans nor moves it (a []byte holds no pointers),
// cgo's pointer checks allow passing it to C, and ONNX Runtime tensors made
// over it with NewCustomDataTensor and the CPU memory info stay valid until
// it is freed, which Model.destroy does after the tensors and the sessions.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

// inferd_dlopen opens name, or with noload only finds it when it is already
// loaded, and on failure copies dlerror's text into err in the same call:
// dlerror is per thread, and a goroutine may change threads between calls.
static void *inferd_dlopen(const char *name, int noload, char *err, size_t n) {
	void *h = dlopen(name, noload ? (RTLD_LAZY | RTLD_NOLOAD) : (RTLD_NOW | RTLD_LOCAL));
	if (h == NULL && !noload) {
		const char *e = dlerror();
		snprintf(err, n, "%s", e ? e : "unknown dlopen error");
	}
	return h;
}

// cudaError_t is a C enum: an int.
typedef int (*inferd_setDevice)(int);
typedef int (*inferd_hostAlloc)(void **, size_t, unsigned int);
typedef int (*inferd_freeHost)(void *);
typedef const char *(*inferd_errorString)(int);

// The trampolines make the device current on the calling thread first, in
// the same call: a thread with no current device would otherwise create a
// context on device 0 (hundreds of MiB of its memory) for a model on
// cuda:N.
static void *inferd_cudaHostAlloc(void *setDevice, void *hostAlloc, int dev, size_t n, int *status) {
	void *p = NULL;
	*status = ((inferd_setDevice)setDevice)(dev);
	if (*status == 0) {
		*status = ((inferd_hostAlloc)hostAlloc)(&p, n, 1); // cudaHostAllocPortable
	}
	return p;
}

static int inferd_cudaFreeHost(void *setDevice, void *freeHost, int dev, void *p) {
	int s = ((inferd_setDevice)setDevice)(dev);
	return s != 0 ? s : ((inferd_freeHost)freeHost)(p);
}

static const char *inferd_cudaGetErrorString(void *fn, int status) {
	return ((inferd_errorString)fn)(status);
}
*/
import "C"

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// cudaRuntime is the CUDA runtime the CUDA provider of ONNX Runtime 1.29
// (CUDA 13) links.
const cudaRuntime = "libcudart.so.13"

// pinnedAllocator allocates page-locked host memory from a CUDA runtime
// loaded with dlopen. Its methods are safe for concurrent use.
type pinnedAllocator struct {
	lib    string
	dev    int // the device made current before each call
	handle unsafe.Pointer
	// found: the library was already loaded (by the CUDA provider), so
	// close drops our reference. One we loaded ourselves stays loaded:
	// unloading a CUDA runtime under a live context is not safe.
	found                                    bool
	setDevice, hostAlloc, freeHost, errorStr unsafe.Pointer
	live                                     atomic.Int64 // bytes allocated and not freed
}

// newPinnedAllocator returns the allocator that cuda.pinned_memory mode
// asks for on a cuda device, from the CUDA runtime lib on device dev:
//   - off: nil;
//   - auto: the allocator, or nil and the reason (for one log line) when
//     lib cannot be loaded or lacks a function;
//   - on: the allocator, or an error wrapping ErrPinnedMemory that names
//     what is missing and the knob.
func newPinnedAllocator(mode, lib string, dev int) (p *pinnedAllocator, reason string, err error) {
	if mode == "off" {
		return nil, "", nil
	}
	p, err = openPinned(lib, dev)
	if err == nil {
		return p, "", nil
	}
	if mode == "on" {
		return nil, "", fmt.Errorf("%w: %w (put CUDA 13's runtime on LD_LIBRARY_PATH, or set cuda.pinned_memory to auto or off)", ErrPinnedMemory, err)
	}
	return nil, err.Error(), nil
}

// openPinned finds lib already loaded, else loads it, and looks up the
// functions the allocator calls.
func openPinned(lib string, dev int) (*pinnedAllocator, error) {
	name := C.CString(lib)
	defer C.free(unsafe.Pointer(name))
	var msg [512]C.char
	p := &pinnedAllocator{lib: lib, dev: dev, found: true}
	p.handle = C.inferd_dlopen(name, 1, &msg[0], C.size_t(len(msg)))
	if p.handle == nil {
		p.found = false
		p.handle = C.inferd_dlopen(name, 0, &msg[0], C.size_t(len(msg)))
	}
	if p.handle == nil {
		return nil, fmt.Errorf("cannot load %s: %s", lib, C.GoString(&msg[0]))
	}
	for _, s := range []struct {
		name string
		fn   *unsafe.Pointer
	}{
		{"cudaSetDevice", &p.setDevice},
		{"cudaHostAlloc", &p.hostAlloc},
		{"cudaFreeHost", &p.freeHost},
		{"cudaGetErrorString", &p.errorStr},
	} {
		sym := C.CString(s.name)
		*s.fn = C.dlsym(p.handle, sym)
		C.free(unsafe.Pointer(sym))
		if *s.fn == nil {
			p.close()
			return nil, fmt.Errorf("%s has no %s: not a CUDA runtime", lib, s.name)
		}
	}
	return p, nil
}

// alloc returns n zeroed bytes of page-locked memory. Free it with free;
// the garbage collector does not.
func (p *pinnedAllocator) alloc(n int) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	var status C.int
	ptr := C.inferd_cudaHostAlloc(p.setDevice, p.hostAlloc, C.int(p.dev), C.size_t(n), &status)
	if status != 0 || ptr == nil {
		return nil, fmt.Errorf("%w: cudaHostAlloc of %d bytes from %s: %s (set cuda.pinned_memory off, or lower max_batch or instances)",
			ErrPinnedMemory, n, p.lib, p.errorString(status))
	}
	p.live.Add(int64(n))
	b := unsafe.Slice((*byte)(ptr), n)
	clear(b) // as Go memory is: warm-up runs on zero rows
	return b, nil
}

// free frees a buffer alloc returned; an empty one is ignored.
func (p *pinnedAllocator) free(b []byte) error {
	if cap(b) == 0 {
		return nil
	}
	if s := C.inferd_cudaFreeHost(p.setDevice, p.freeHost, C.int(p.dev), unsafe.Pointer(unsafe.SliceData(b))); s != 0 {
		return fmt.Errorf("gpu: cudaFreeHost of %d bytes: %s", cap(b), p.errorString(s))
	}
	p.live.Add(-int64(cap(b)))
	return nil
}

func (p *pinnedAllocator) errorString(status C.int) string {
	if s := C.inferd_cudaGetErrorString(p.errorStr, status); s != nil {
		return fmt.Sprintf("%s (cudaError %d)", C.GoString(s), int(status))
	}
	return fmt.Sprintf("cudaError %d", int(status))
}

// close drops the reference to a runtime that was already loaded; every
// buffer must have been freed.
func (p *pinnedAllocator) close() {
	if p.found && p.handle != nil {
		C.dlclose(p.handle)
	}
	p.handle = nil
}
