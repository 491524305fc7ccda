package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Inspect reads the inputs and outputs the ONNX file at path declares and
// checks them as Open does before it creates sessions: each a tensor of an
// element type inferd serves, at least one input and one output, and
// shapes inferd can serve (every dimension but a shared batch dimension
// fixed; a model whose tensors share none is served unbatched, and the
// tensors it returns say so: TensorInfo.Batched). It creates no session to keep (ONNX Runtime
// parses the file in a temporary one) and allocates no device memory, so
// a config check can call it.
//
// The library is loaded as Load(library) does when the process has none
// yet; once one is loaded it reads the file, whatever library says, as it
// would open the model (a process has one ONNX Runtime). A library that
// cannot be loaded is an error wrapping ErrLibrary. Every other error wraps
// ErrBadModel and, unlike Open's, does not name path: the caller does.
func Inspect(library, path string) (inputs, outputs []TensorInfo, err error) {
	if !loaded() {
		if _, err := Load(library); err != nil {
			return nil, nil, err
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the caller names the file
		}
		return nil, nil, &badModel{msg: err.Error(), err: err}
	}
	if len(data) == 0 {
		return nil, nil, &badModel{msg: "not an ONNX model: the file is empty"}
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		msg := strings.TrimSuffix(strings.TrimPrefix(err.Error(), "Error creating temporary session: "), ".")
		return nil, nil, &badModel{msg: fmt.Sprintf("not an ONNX model: onnx runtime says: %s (%d bytes)", lowerFirst(msg), len(data))}
	}
	for _, io := range ins {
		t, err := tensorInfo("input", io)
		if err != nil {
			return nil, nil, &badModel{msg: strings.TrimPrefix(err.Error(), ErrBadModel.Error()+": ")}
		}
		inputs = append(inputs, t)
	}
	for _, io := range outs {
		t, err := tensorInfo("output", io)
		if err != nil {
			return nil, nil, &badModel{msg: strings.TrimPrefix(err.Error(), ErrBadModel.Error()+": ")}
		}
		outputs = append(outputs, t)
	}
	if len(inputs) == 0 || len(outputs) == 0 {
		return nil, nil, &badModel{msg: fmt.Sprintf("the model has %d inputs and %d outputs; want at least one of each", len(inputs), len(outputs))}
	}
	if _, _, err := layout(inputs, outputs); err != nil {
		return nil, nil, &badModel{msg: strings.TrimPrefix(err.Error(), ErrBadModel.Error()+": ")}
	}
	return inputs, outputs, nil
}

// loaded reports whether the process's ONNX Runtime is loaded.
func loaded() bool {
	lib.Lock()
	defer lib.Unlock()
	return lib.done && lib.err == nil
}

// badModel is an error that is ErrBadModel without saying so in its text,
// for a caller that names the file and says what is wrong in its own words.
type badModel struct {
	msg string
	err error // the cause, when there is one (the file unreadable)
}

func (e *badModel) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *badModel) Unwrap() error { return e.err }

// Is makes errors.Is(err, ErrBadModel) hold.
func (*badModel) Is(target error) bool { return target == ErrBadModel }
