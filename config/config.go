// Package config loads and validates inferd's YAML configuration. Loading
// is strict: an unknown key is an error naming it. Zero values mean the
// defaults given in each field's comment, so an empty file (or none) serves
// the generated ResNet50 on :8000. Validate reports every value that
// startup would refuse, Check adds the files the config names; both say
// each problem on a line of its own, naming the key as the file writes it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/batcher"
	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/model"
	"github.com/inferd/inferd/register"
	"github.com/inferd/inferd/tlscert"
)

// Config is the whole of inferd.yaml.
type Config struct {
	// Listen is the HTTP address. Default ":8000".
	Listen string `yaml:"listen"`
	// GRPCListen is the address of the KServe v2 gRPC endpoint
	// (inference.GRPCInferenceService, grpc.health.v1, reflection).
	// Default ":8001", as Triton; "" or "off" turns gRPC off. Trap: when
	// the key is absent and :8001 is taken (a second replica on the host),
	// the replica serves HTTP only and logs a warning; a grpc_listen the
	// file sets must bind.
	GRPCListen string `yaml:"grpc_listen"`
	// Runtime says which ONNX Runtime to load.
	Runtime Runtime `yaml:"runtime"`
	// Server holds the HTTP limits and shutdown timing.
	Server Server `yaml:"server"`
	// Models are served side by side. Default: one model "resnet50", the
	// generated ResNet50, on device auto.
	Models []Model `yaml:"models"`
	// Register announces the replica in a Consul catalog. Default off.
	// Package register owns its keys, defaults and validation.
	Register register.Settings `yaml:"register"`
	// Auth requires API keys, fences models and caps rates per tenant, for
	// a replica that serves without the HAProxy gateway in front; it also
	// names the tenants requests are counted under. Default off. Package
	// auth owns its keys, defaults and validation; SIGHUP re-reads them
	// and the keys file.
	Auth auth.Settings `yaml:"auth"`
	// TLS serves HTTPS (TLS 1.2+) with a certificate SIGHUP re-reads.
	// Default off: plain HTTP. Package tlscert owns its keys and
	// validation.
	TLS tlscert.Settings `yaml:"tls"`

	file string // the file Read read it from, for error messages
	// grpcDefault: grpc_listen was absent and took its default.
	grpcDefault bool
}

// DefaultGRPCListen is grpc_listen's default, Triton's gRPC port.
const DefaultGRPCListen = ":8001"

// grpcUnset marks grpc_listen absent from the file until fill.
const grpcUnset = "\x00unset"

// GRPCListenDefaulted reports whether grpc_listen took its default (the
// file has no grpc_listen key): its address may then be taken without
// the replica failing to start.
func (c *Config) GRPCListenDefaulted() bool { return c.grpcDefault }

// Runtime selects the ONNX Runtime library.
type Runtime struct {
	// Library is the path of libonnxruntime.so. Default: $INFERD_ORT_LIB,
	// then .deps/ort of the checkout, then the system search path.
	Library string `yaml:"library"`
	// ModelDir is where generated models are cached. Default:
	// $INFERD_MODEL_DIR, else ~/.cache/inferd/models.
	ModelDir string `yaml:"model_dir"`
}

// Server holds the front end's limits.
type Server struct {
	// MaxBodyBytes caps a request body; larger bodies get 413. Default
	// 64 MiB (a batch of 64 float32 224x224 images is 38.5 MiB in binary).
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxPixels caps a decoded image's width*height (decompression bombs get
	// 415). Default 40,000,000.
	MaxPixels int `yaml:"max_pixels"`
	// ReadTimeout bounds reading one request, headers and body, so a slow
	// client never holds a batch slot. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing one response. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections caps concurrent connections. Default 10,000. Beyond
	// it, 32 more are accepted that serve only health checks and /metrics
	// (one request each), so a replica whose slots are taken is not dropped
	// by its load balancer; the rest get 503.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerClient caps the connections from one client IP
	// address; beyond it a connection gets 429 and is closed. Default
	// 1,024. Trap: behind a load balancer every connection comes from its
	// address, so keep this above the balancer's connections per replica
	// (configs/haproxy.cfg: maxconn 1000 per server).
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// MemoryLimit bounds the memory requests hold at once: bodies as they
	// arrive, decompressed bodies, parsed tensors and decoded images are
	// reserved against it before they are allocated. A request that does
	// not fit waits up to 100 ms for others to finish, then gets 503 with
	// Retry-After; one that could never fit gets 413. The Go runtime's soft
	// memory limit follows it (plus the server's own heap and 32 MiB), so
	// memory from a spike goes back to the OS. Bytes, or a string with a
	// unit ("2GiB", "512MiB"). Default: half of GOMEMLIMIT when that is set,
	// else a quarter of the host's memory (the cgroup's when lower), at
	// least 256 MiB. Trap: it does not count the models' memory (ONNX
	// Runtime's sessions), which is fixed once they load.
	MemoryLimit ByteSize `yaml:"memory_limit"`
	// DrainDelay is how long readiness reports 503 before the listener
	// closes at shutdown, so load balancers move away first. Default 0
	// standalone; set it to a few health-check intervals behind HAProxy.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout bounds finishing queued and in-flight work. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReplicaName is sent in the X-Inferd-Replica header of every response.
	// Default: HOSTNAME:PORT, the host name and the listen port.
	ReplicaName string `yaml:"replica_name"`
	// ResponseCompression is "auto" (default: a response of 1 KiB or more
	// is sent gzip- or deflate-compressed when the request's
	// Accept-Encoding allows it, as Triton does) or "off". Compressed
	// request bodies (Content-Encoding gzip or deflate) are always taken,
	// up to MaxBodyBytes decompressed.
	ResponseCompression string `yaml:"response_compression"`
	// Uploads bounds the images POST /upload keeps in memory for
	// POST /recognize to classify by id.
	Uploads Uploads `yaml:"uploads"`
}

// Uploads bounds the images POST /upload keeps, in memory only. Each
// image's bytes stay reserved on memory_limit until it expires.
type Uploads struct {
	// MaxCount caps the images kept at once; beyond it an upload gets 503
	// with Retry-After (when the oldest expires). Default 1,024.
	MaxCount int `yaml:"max_count"`
	// MaxBytes caps their bytes together; an image alone over it gets 413,
	// one that does not fit beside the others 503. Bytes or "256MiB".
	// Default 256 MiB or a quarter of memory_limit, whichever is less.
	// Trap: stored images count on memory_limit, so what they hold is not
	// there for requests; it may be at most half of memory_limit.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// TTL is how long an image is kept after its upload; its id then
	// gets 404. Default 10m.
	TTL time.Duration `yaml:"ttl"`
}

// Model is one served model.
type Model struct {
	// Name is the model's name in URLs. Required, unique.
	Name string `yaml:"name"`
	// Path is an ONNX file, or "builtin:NAME" for a model inferd generates
	// (resnet50, resnet50-fp16, resnet50-uint8, tiny, ...). Default
	// "builtin:resnet50".
	Path string `yaml:"path"`
	// Labels is a synset.txt-style file: one label per line, a leading
	// WordNet id (n01234567) dropped. Default: none (labels are indexes).
	Labels string `yaml:"labels"`
	// Options are where and how the model runs, at the top level of its
	// entry: device (default "auto": cuda:0 when the CUDA provider loads,
	// else cpu, with one log line saying which and why), allow_cpu_fallback,
	// instances, intra_op_threads, max_batch, buckets and cuda. Package gpu
	// owns them: their keys, defaults and validation (gpu.Options).
	gpu.Options `yaml:",inline"`
	// Batcher tunes the dynamic batcher; package batcher owns its keys,
	// defaults and validation (batcher.Config; max_batch and the buckets
	// come from the sessions).
	Batcher batcher.Config `yaml:"batcher"`
	// Preprocess says how an image becomes an input row.
	Preprocess Preprocess `yaml:"preprocess"`
	// Softmax applies softmax to the classify endpoint's scores: "auto"
	// (default: when a row does not already sum to 1), "true" or "false".
	Softmax string `yaml:"softmax"`
	// Cache keeps the model's outputs per input, so a repeated input is
	// answered without running the model (package respcache). Default off.
	Cache Cache `yaml:"cache"`
}

// Cache is a model's response cache. Its memory is outside
// server.memory_limit (the per-request budget) but bounded by MaxBytes.
type Cache struct {
	// MaxBytes bounds the cached outputs, each entry weighed at its bytes
	// plus 256. Default 0: no cache. At most 1TiB. Bytes or "512MiB".
	// Trap: the process needs this much memory beside memory_limit.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// TTL is how long an entry is answered after it was computed.
	// Default 0: until evicted (one loaded model's answers do not go
	// stale; a reload that changes the model starts an empty cache).
	TTL time.Duration `yaml:"ttl"`
}

// Preprocess says how images become rows; defaults are ImageNet's.
type Preprocess struct {
	// Size is the crop side. Default 224 (or the model's input size).
	Size int `yaml:"size"`
	// Resize is the shorter side before the centre crop. Default Size*256/224.
	Resize int `yaml:"resize"`
	// Mean per RGB channel on the [0,1] scale. Default (0.485, 0.456, 0.406).
	Mean []float32 `yaml:"mean"`
	// Std per RGB channel. Default (0.229, 0.224, 0.225).
	Std []float32 `yaml:"std"`
	// Resample is "pil" (default: Pillow's 8-bit resize, rows identical to
	// torchvision's transforms on PIL images) or "float" (the same filter
	// in float32, as torchvision computes on float tensors; see
	// preprocess.Config.Resample). Float input models only.
	Resample string `yaml:"resample"`
	// JPEGDCTScaling lets libjpeg-turbo decode a large JPEG at 1/2 or 1/4
	// scale before the resize (about 1.5x faster on 800x600 photos), at
	// the price of rows that are no longer PIL's (0.3-2 levels of 255 on
	// average; see preprocess.Config.JPEGDCTScaling). Default false.
	JPEGDCTScaling bool `yaml:"jpeg_dct_scaling"`
}

// Default is the configuration with no file: the generated ResNet50.
func Default() *Config {
	c := &Config{GRPCListen: grpcUnset}
	c.fill()
	return c
}

// Load reads and validates the file at path: strict decoding, then
// Validate. It does not look at the files the config names; Check does.
func Load(path string) (*Config, error) {
	c, err := Read(path)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Read decodes the file at path strictly and fills the defaults without
// validating, for a caller that changes the config (command-line flags)
// before it calls Check or Validate. Their errors then name the file.
func Read(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := decode(data)
	if err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = slices.Clone(j.Unwrap())
		}
		return nil, (&Config{file: path}).inFile(errs) // each line names the file
	}
	c.file = path
	return c, nil
}

// Parse decodes YAML strictly and validates it.
func Parse(data []byte) (*Config, error) {
	c, err := decode(data)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func decode(data []byte) (*Config, error) {
	c := &Config{GRPCListen: grpcUnset}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// Every unknown key and mistyped value, one line each.
			errs := make([]error, len(te.Errors))
			for i, e := range te.Errors {
				errs[i] = errors.New("config: " + e)
			}
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c.fill()
	return c, nil
}

func (c *Config) fill() {
	if c.Listen == "" {
		c.Listen = ":8000"
	}
	switch c.GRPCListen {
	case grpcUnset:
		c.GRPCListen, c.grpcDefault = DefaultGRPCListen, true
	case "off":
		c.GRPCListen = ""
	}
	s := &c.Server
	s.MaxBodyBytes = or(s.MaxBodyBytes, 64<<20)
	s.MaxPixels = or(s.MaxPixels, 40_000_000)
	s.ReadTimeout = or(s.ReadTimeout, 30*time.Second)
	s.WriteTimeout = or(s.WriteTimeout, 30*time.Second)
	s.IdleTimeout = or(s.IdleTimeout, 120*time.Second)
	s.MaxConnections = or(s.MaxConnections, 10_000)
	s.MaxConnectionsPerClient = or(s.MaxConnectionsPerClient, 1024)
	s.MemoryLimit = or(s.MemoryLimit, ByteSize(budget.DefaultLimit()))
	s.ShutdownTimeout = or(s.ShutdownTimeout, 30*time.Second)
	s.ResponseCompression = or(s.ResponseCompression, "auto")
	s.Uploads.MaxCount = or(s.Uploads.MaxCount, 1024)
	s.Uploads.MaxBytes = or(s.Uploads.MaxBytes, min(256<<20, s.MemoryLimit/4))
	s.Uploads.TTL = or(s.Uploads.TTL, 10*time.Minute)
	if len(c.Models) == 0 {
		c.Models = []Model{{Name: "resnet50"}}
	}
	c.Register = c.Register.WithDefaults()
	for i := range c.Models {
		m := &c.Models[i]
		m.Path = or(m.Path, "builtin:resnet50")
		m.Device = or(m.Device, "auto")
		m.Softmax = or(m.Softmax, "auto")
	}
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Validate checks values the types cannot, and the values ONNX Runtime's
// sessions (gpu.Options) and the batchers (batcher.Config) would refuse at
// startup, without opening anything. It reports every problem, one line
// each (errors.Join), naming the key as the file writes it:
// models[0].device "gpu": want auto, cpu or cuda:N.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, m := range c.Models {
		key := fmt.Sprintf("models[%d]", i)
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("config: %s.name is required", key))
		case strings.ContainsAny(m.Name, "/?# "):
			errs = append(errs, fmt.Errorf("config: %s.name %q: must not contain '/', '?', '#' or spaces", key, m.Name))
		case seen[m.Name]:
			errs = append(errs, fmt.Errorf("config: %s.name %q: already used by another model", key, m.Name))
		}
		seen[m.Name] = true
		errs = append(errs, checkModel(key, m)...)
		errs = append(errs, checkRun(key, m)...)
	}
	for _, err := range lines(c.Register.Validate()) {
		errs = append(errs, fmt.Errorf("config: register.%w", err))
	}
	for _, err := range lines(c.Auth.Validate()) {
		errs = append(errs, fmt.Errorf("config: auth.%w", err))
	}
	for _, err := range lines(c.TLS.Validate()) {
		errs = append(errs, fmt.Errorf("config: tls.%w", err))
	}
	if err := CheckListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	if c.GRPCListen != "" {
		if err := CheckListen(c.GRPCListen); err != nil {
			errs = append(errs, fmt.Errorf("config: grpc_%w (or off)", err))
		}
	}
	if c.Server.MaxBodyBytes < 0 || c.Server.MaxPixels < 0 || c.Server.MaxConnections < 0 || c.Server.MaxConnectionsPerClient < 0 {
		errs = append(errs, errors.New("config: server.max_body_bytes, max_pixels, max_connections and max_connections_per_client must be >= 0"))
	}
	if c.Server.MemoryLimit < 16<<20 {
		errs = append(errs, fmt.Errorf("config: server.memory_limit %d bytes: want at least 16MiB", c.Server.MemoryLimit))
	}
	if rc := c.Server.ResponseCompression; rc != "auto" && rc != "off" {
		errs = append(errs, fmt.Errorf("config: server.response_compression %q: want auto or off", rc))
	}
	if u := c.Server.Uploads; u.MaxCount < 0 || u.MaxBytes < 0 || u.TTL < 0 {
		errs = append(errs, errors.New("config: server.uploads.max_count, max_bytes and ttl must be >= 0"))
	} else if u.MaxBytes > c.Server.MemoryLimit/2 {
		errs = append(errs, fmt.Errorf("config: server.uploads.max_bytes %d bytes: want at most half of server.memory_limit (%d bytes); stored uploads are reserved on it", u.MaxBytes, c.Server.MemoryLimit))
	}
	return c.inFile(errs)
}

// inFile joins errs, each line prefixed with the file they come from when
// the config was read from one.
func (c *Config) inFile(errs []error) error {
	errs = slices.DeleteFunc(errs, func(err error) bool { return err == nil })
	if c.file != "" {
		for i, err := range errs {
			errs[i] = fmt.Errorf("%s: %w", c.file, err)
		}
	}
	return errors.Join(errs...)
}

func checkModel(key string, m Model) []error {
	var errs []error
	if name, ok := strings.CutPrefix(m.Path, "builtin:"); ok {
		if _, err := model.ParseName(name); err != nil {
			errs = append(errs, fmt.Errorf("config: %s.path %q: %w", key, m.Path, err))
		}
	}
	switch m.Softmax {
	case "auto", "true", "false":
	default:
		errs = append(errs, fmt.Errorf("config: %s.softmax %q: want auto, true or false", key, m.Softmax))
	}
	for _, kv := range []struct {
		name string
		v    int
	}{{"preprocess.size", m.Preprocess.Size}, {"preprocess.resize", m.Preprocess.Resize}} {
		if kv.v < 0 {
			errs = append(errs, fmt.Errorf("config: %s.%s %d: must be >= 0", key, kv.name, kv.v))
		}
	}
	for _, kv := range []struct {
		name string
		v    []float32
	}{{"mean", m.Preprocess.Mean}, {"std", m.Preprocess.Std}} {
		if len(kv.v) != 0 && len(kv.v) != 3 {
			errs = append(errs, fmt.Errorf("config: %s.preprocess.%s has %d values: want 3 (R, G, B)", key, kv.name, len(kv.v)))
		}
	}
	switch m.Preprocess.Resample {
	case "", "pil", "float":
	default:
		errs = append(errs, fmt.Errorf("config: %s.preprocess.resample %q: want pil or float", key, m.Preprocess.Resample))
	}
	if slices.ContainsFunc(m.Preprocess.Std, func(s float32) bool { return s <= 0 }) {
		errs = append(errs, fmt.Errorf("config: %s.preprocess.std %v: every value must be > 0", key, m.Preprocess.Std))
	}
	switch c := m.Cache; {
	case c.MaxBytes < 0 || c.MaxBytes > 1<<40:
		errs = append(errs, fmt.Errorf("config: %s.cache.max_bytes %d bytes: want 0 (off) to 1TiB", key, c.MaxBytes))
	case c.TTL < 0:
		errs = append(errs, fmt.Errorf("config: %s.cache.ttl %v: must be >= 0", key, c.TTL))
	case c.TTL > 0 && c.MaxBytes == 0:
		errs = append(errs, fmt.Errorf("config: %s.cache.ttl %v without cache.max_bytes: the cache is off; set max_bytes", key, c.TTL))
	}
	return errs
}
