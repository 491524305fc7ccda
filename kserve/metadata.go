package kserve

// ExtensionBinaryTensorData is the name servers list in
// ServerMetadata.Extensions when they accept binary tensor data.
const ExtensionBinaryTensorData = "binary_tensor_data"

// TensorMetadata describes one model input or output in ModelMetadata.
// A dimension of -1 is variable (the batch dimension, typically).
type TensorMetadata struct {
	// Name is the tensor's name in the model.
	Name string `json:"name"`
	// Datatype is one of BOOL ... FP64 (see DatatypeSize).
	Datatype string `json:"datatype"`
	// Shape holds the dimensions, -1 for variable ones.
	Shape []int64 `json:"shape"`
}

// ModelMetadata is the body of GET /v2/models/{name}[/versions/{v}].
// Marshal it with encoding/json.
type ModelMetadata struct {
	// Name is the model's name.
	Name string `json:"name"`
	// Versions is optional in the protocol: omitted when empty (rather
	// than sent as null).
	Versions []string `json:"versions,omitempty"`
	// Platform names the framework, e.g. "onnxruntime_onnx" as Triton
	// reports ONNX models.
	Platform string `json:"platform"`
	// Inputs describes the model's inputs.
	Inputs []TensorMetadata `json:"inputs"`
	// Outputs describes the model's outputs.
	Outputs []TensorMetadata `json:"outputs"`
}

// ServerMetadata is the body of GET /v2. Marshal it with encoding/json.
type ServerMetadata struct {
	// Name is the server's name.
	Name string `json:"name"`
	// Version is the server's version.
	Version string `json:"version"`
	// Extensions lists the protocol extensions served, e.g.
	// ExtensionBinaryTensorData.
	Extensions []string `json:"extensions"`
}
