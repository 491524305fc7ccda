package loadtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/kserve"
)

// Protocols a load can speak.
const (
	// ProtocolHTTP sends the endpoint's HTTP requests (vegeta's attacker).
	ProtocolHTTP = "http"
	// ProtocolGRPC sends KServe v2 gRPC ModelInfer calls with the tensors
	// in raw_input_contents: the infer-binary endpoint over gRPC.
	ProtocolGRPC = "grpc"
)

// DefaultGRPCPort is the gRPC port GRPCAddr defaults to on the URL's
// host: Triton's and inferd's grpc_listen default.
const DefaultGRPCPort = "8001"

// DefaultGRPCConns is GRPCConns' default.
const DefaultGRPCConns = 4

// grpcInferMethod is the full name of the KServe v2 infer call.
const grpcInferMethod = "/inference.GRPCInferenceService/ModelInfer"

// grpcLoad is the gRPC side of a plan: connections to the server's gRPC
// port and the ModelInfer request, encoded once, as vegeta sends one
// prepared body for every HTTP request.
type grpcLoad struct {
	url   string // grpc://ADDR/inference.GRPCInferenceService/ModelInfer, the results' URL
	conns []*grpc.ClientConn
	req   preEncoded
	md    metadata.MD
	opts  []grpc.CallOption
	next  atomic.Uint64 // round robin over conns
}

// grpcAddr is cfg's gRPC address: GRPCAddr, else the URL's host on
// DefaultGRPCPort.
func (c Config) grpcAddr() string {
	if c.GRPCAddr != "" {
		return c.GRPCAddr
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(u.Hostname(), DefaultGRPCPort)
}

// newGRPCLoad connects to cfg's gRPC address (TLS when the URL is https,
// verified against tlsConf's roots), reads the model's metadata over gRPC,
// which proves the port answers and knows the model, and encodes the
// request.
func newGRPCLoad(ctx context.Context, cfg Config, tlsConf *tls.Config) (*grpcLoad, error) {
	addr := cfg.grpcAddr()
	creds := insecure.NewCredentials()
	if strings.HasPrefix(cfg.URL, "https:") {
		creds = credentials.NewTLS(tlsConf.Clone())
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Answers of any size, as vegeta reads any body (grpc-go's
		// default stops at 4 MiB).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
	}
	md := metadata.MD{}
	for name, values := range cfg.Headers {
		switch name = strings.ToLower(name); name {
		case "host":
			dial = append(dial, grpc.WithAuthority(values[len(values)-1]))
		case "content-type", "accept-encoding", "connection", "te":
			// HTTP's own: gRPC sets its content type, and compression
			// follows AcceptEncoding.
		default:
			md[name] = values
		}
	}
	g := &grpcLoad{url: "grpc://" + addr + grpcInferMethod, md: md}
	if cfg.AcceptEncoding == "gzip" {
		g.opts = append(g.opts, grpc.UseCompressor("gzip"))
	}
	for range cfg.GRPCConns {
		cc, err := grpc.NewClient(addr, dial...)
		if err != nil {
			g.close()
			return nil, fmt.Errorf("grpc target %s: %w", addr, err)
		}
		cc.Connect() // all connect now, not on the load's first calls
		g.conns = append(g.conns, cc)
	}
	mdata, err := g.metadata(ctx, addr, cfg.Model)
	if err != nil {
		g.close()
		return nil, err
	}
	rows, err := tensorRows(mdata, cfg.Tensor)
	if err != nil {
		g.close()
		return nil, err
	}
	req := &inferencepb.ModelInferRequest{ModelName: cfg.Model, RawInputContents: rows}
	for _, in := range mdata.Inputs {
		shape, _ := rowShape(in) // tensorRows checked it
		req.Inputs = append(req.Inputs, &inferencepb.ModelInferRequest_InferInputTensor{
			Name: in.Name, Datatype: in.Datatype, Shape: append([]int64{1}, shape...),
		})
	}
	for _, out := range mdata.Outputs {
		req.Outputs = append(req.Outputs, &inferencepb.ModelInferRequest_InferRequestedOutputTensor{Name: out.Name})
	}
	if g.req, err = proto.Marshal(req); err != nil {
		g.close()
		return nil, fmt.Errorf("encoding the infer request: %w", err)
	}
	return g, nil
}

// metadata reads the model's metadata over gRPC (ModelMetadata), naming
// the model when the server does not have it.
func (g *grpcLoad) metadata(ctx context.Context, addr, model string) (*kserve.ModelMetadata, error) {
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, g.md), probeTimeout)
	defer cancel()
	resp, err := inferencepb.NewGRPCInferenceServiceClient(g.conns[0]).ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: model})
	if err != nil {
		st := status.Convert(err)
		switch {
		case st.Code() == codes.NotFound:
			return nil, fmt.Errorf("model %q not found on grpc %s (%w)", model, addr, err)
		case strings.Contains(st.Message(), "certificate signed by unknown authority"):
			return nil, fmt.Errorf("grpc target %s: certificate not trusted: %w (give the CA that signed it: -cacert FILE, Config.CACert)", addr, err)
		case st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded:
			return nil, fmt.Errorf("grpc target %s unreachable: %w", addr, err)
		}
		return nil, fmt.Errorf("model %q metadata over grpc %s: %w", model, addr, err)
	}
	md := &kserve.ModelMetadata{Name: resp.GetName(), Versions: resp.GetVersions(), Platform: resp.GetPlatform()}
	for _, t := range resp.GetInputs() {
		md.Inputs = append(md.Inputs, kserve.TensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	for _, t := range resp.GetOutputs() {
		md.Outputs = append(md.Outputs, kserve.TensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	if len(md.Inputs) == 0 {
		return nil, fmt.Errorf("model %q metadata from grpc %s lists no inputs", model, addr)
	}
	return md, nil
}

// close closes the connections; g may be nil.
func (g *grpcLoad) close() {
	if g == nil {
		return
	}
	for _, cc := range g.conns {
		cc.Close()
	}
	g.conns = nil
}

// grpcAttack is one attack's state, as vegeta's attack: the start that
// timestamps are taken from and the sequence numbers.
type grpcAttack struct {
	name  string
	began time.Time
	mu    sync.Mutex
	seq   uint64
}

// attack sends ModelInfer calls paced by pacer for du, with vegeta's
// attacker's semantics: workers goroutines take ticks, one more is started
// (up to maxWorkers) when all are busy, so that a closed loop (rate 0,
// workers == maxWorkers == concurrency) keeps exactly that many calls in
// flight. Results come on the channel, which closes when the last call in
// flight is answered; stop ends the ticks early.
func (g *grpcLoad) attack(pacer vegeta.Pacer, workers, maxWorkers uint64, du, timeout time.Duration, name string) (results <-chan *vegeta.Result, stop func()) {
	atk := &grpcAttack{name: name, began: time.Now()}
	out := make(chan *vegeta.Result)
	ticks := make(chan struct{})
	stopch := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { close(stopch) }) }
	var wg sync.WaitGroup
	worker := func() {
		defer wg.Done()
		for range ticks {
			out <- g.hit(atk, timeout)
		}
	}
	workers = min(workers, maxWorkers)
	for range workers {
		wg.Add(1)
		go worker()
	}
	go func() {
		defer func() {
			close(ticks)
			wg.Wait()
			close(out)
			stop()
		}()
		count := uint64(0)
		for {
			elapsed := time.Since(atk.began)
			if du > 0 && elapsed > du {
				return
			}
			wait, done := pacer.Pace(elapsed, count)
			if done {
				return
			}
			time.Sleep(wait)
			if workers < maxWorkers {
				select {
				case ticks <- struct{}{}:
					count++
					continue
				case <-stopch:
					return
				default: // every worker busy: start one more
					workers++
					wg.Add(1)
					go worker()
				}
			}
			select {
			case ticks <- struct{}{}:
				count++
			case <-stopch:
				return
			}
		}
	}()
	return out, stop
}

// hit makes one ModelInfer call and returns its result as vegeta's HTTP
// results are: Code 200 for OK, else the HTTP status of the gRPC code
// (httperr.FromGRPC), 0 when the call's own timeout ran out; Error the gRPC
// code and message; BytesOut and BytesIn the request and response
// messages' sizes; Headers the response's header metadata.
func (g *grpcLoad) hit(atk *grpcAttack, timeout time.Duration) *vegeta.Result {
	res := &vegeta.Result{Attack: atk.name, Method: http.MethodPost, URL: g.url}
	atk.mu.Lock()
	res.Timestamp = atk.began.Add(time.Since(atk.began))
	res.Seq = atk.seq
	atk.seq++
	atk.mu.Unlock()

	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), g.md), timeout)
	defer cancel()
	var (
		resp   sized
		header metadata.MD
	)
	cc := g.conns[(g.next.Add(1)-1)%uint64(len(g.conns))]
	opts := append([]grpc.CallOption{grpc.ForceCodecV2(rawCodec{}), grpc.Header(&header)}, g.opts...)
	err := cc.Invoke(ctx, grpcInferMethod, g.req, &resp, opts...)
	res.Latency = time.Since(res.Timestamp)
	res.BytesOut = uint64(len(g.req))
	res.BytesIn = uint64(resp.n)
	if len(header) > 0 {
		res.Headers = make(http.Header, len(header))
		for k, v := range header {
			res.Headers[textproto.CanonicalMIMEHeaderKey(k)] = v
		}
	}
	if err == nil {
		res.Code = http.StatusOK
		return res
	}
	st := status.Convert(err)
	res.Error = st.Code().String() + ": " + st.Message()
	if dl, _ := ctx.Deadline(); st.Code() == codes.DeadlineExceeded && !time.Now().Before(dl) {
		res.Code = 0 // the client gave up, as on vegeta's timeout
	} else {
		res.Code = uint16(httperr.FromGRPC(st.Code()))
	}
	return res
}

// preEncoded is a message in its wire form, sent as is.
type preEncoded []byte

// sized is an answer read only for its size: the load, as vegeta's,
// does not decode what it gets back.
type sized struct{ n int }

// rawCodec sends a preEncoded request without encoding it again and reads
// the answer into sized without decoding it: the client's cost per call is
// the transport's, as vegeta's is for HTTP. Its name is "proto", so the
// server sees an ordinary application/grpc+proto call.
type rawCodec struct{}

// Marshal returns v's bytes; v must be preEncoded.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(preEncoded)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot send %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

// Unmarshal records the answer's size in v, a *sized.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	s, ok := v.(*sized)
	if !ok {
		return fmt.Errorf("raw codec: cannot read into %T", v)
	}
	s.n = data.Len()
	return nil
}

// Name is "proto": the wire format is protobuf's.
func (rawCodec) Name() string { return "proto" }
