package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // clients may send and ask for gzip
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/batcher"
	"github.com/inferd/inferd/host"
	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/inferencepb"
)

// The KServe v2 gRPC front end (grpc_listen): inference.GRPCInferenceService
// as Triton publishes it, grpc.health.v1 and server reflection, on
// google.golang.org/grpc, over the same models, batchers, memory budget,
// API keys, statistics and metrics as HTTP. Handlers return the errors the
// HTTP routes return (*httperr.Error); grpcStatus turns them into gRPC
// status codes, in one place.

// grpcMaxStreams bounds the concurrent calls of one connection: beyond it
// a client's calls wait for a slot (grpc-go clients queue, they do not
// fail).
const grpcMaxStreams = 1024

// grpcFront is the gRPC server of a Server, built by the first ServeGRPC.
type grpcFront struct {
	mu      sync.Mutex
	srv     *grpc.Server
	stopped bool          // StopGRPC ran: ServeGRPC refuses
	stop    chan struct{} // closed when StopGRPC begins: health watches end
}

// grpcService implements inferencepb.GRPCInferenceServiceServer on s.
type grpcService struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

var _ inferencepb.GRPCInferenceServiceServer = (*grpcService)(nil)

// ServeGRPC serves the KServe v2 gRPC protocol (inference.GRPCInferenceService),
// grpc.health.v1 and server reflection on ln until StopGRPC (or Shutdown,
// which calls it after the HTTP drain). It may serve several listeners;
// the first call builds the gRPC server. Messages are capped at
// server.max_body_bytes, connections as HTTP's are (max_connections,
// max_connections_per_client: one over a limit is closed at accept), and
// with tls: set it serves TLS with the same certificate. Like Serve, it
// loads the keys file and certificate first unless they were loaded.
func (s *Server) ServeGRPC(ln net.Listener) error {
	if err := s.loadSecurityOnce(ln); err != nil {
		return err
	}
	g := &s.grpc
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		ln.Close()
		return errors.New("grpc: the server is stopped")
	}
	if g.srv == nil {
		g.srv, g.stop = s.newGRPC(), make(chan struct{})
	}
	srv := g.srv
	g.mu.Unlock()
	s.secMu.Lock()
	s.serving = true
	tls := s.tls != nil
	s.secMu.Unlock()
	s.log.Info("grpc listening", "addr", ln.Addr().String(), "tls", tls)
	return srv.Serve(newGRPCConnLimiter(ln, s.cfg.Server.MaxConnections, s.cfg.Server.MaxConnectionsPerClient, s.stats.connRejected))
}

// StopGRPC stops the gRPC server gracefully: no new calls, and those in
// progress finish (health watches end at once); when ctx ends first, the
// rest are cut (Stop) and the error says so. Shutdown calls it after the
// HTTP drain, before the models close. It does nothing when ServeGRPC was
// never called.
func (s *Server) StopGRPC(ctx context.Context) error {
	g := &s.grpc
	g.mu.Lock()
	srv, first := g.srv, !g.stopped
	g.stopped = true
	if srv != nil && first {
		close(g.stop)
	}
	g.mu.Unlock()
	if srv == nil {
		return nil
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
		<-done
		err = fmt.Errorf("calls in progress cut: %w", ctx.Err())
	}
	s.log.Info("shutdown step done", "step", "grpc", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// newGRPC builds the gRPC server with the server's limits.
func (s *Server) newGRPC() *grpc.Server {
	c := s.cfg.Server
	opts := []grpc.ServerOption{
		// grpc-go reads a whole message before the handler runs: this caps
		// it, as max_body_bytes caps an HTTP body. Over it, the client gets
		// ResourceExhausted from grpc-go itself. Responses are the model's
		// outputs, bounded by the model, and keep grpc-go's send limit.
		grpc.MaxRecvMsgSize(c.MaxBodyBytes),
		grpc.MaxConcurrentStreams(grpcMaxStreams),
		grpc.ConnectionTimeout(c.ReadTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: c.IdleTimeout,
			Time:              time.Minute,
			Timeout:           20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.grpcUnary),
		// ModelInfer's raw contents alias the received message (grpc_codec.go).
		grpc.ForceServerCodecV2(newGRPCCodec(s.budget)),
		experimental.BufferPool(grpcBufferPool), // not zeroed: grpc_codec.go says why that is sound
	}
	s.secMu.Lock()
	if s.tls != nil {
		tc := s.tls.Config()
		tc.NextProtos = []string{"h2"}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	s.secMu.Unlock()
	srv := grpc.NewServer(opts...)
	srv.RegisterService(grpcServiceDesc(), &grpcService{s: s}) // RegisterGRPCInferenceServiceServer, ModelInfer decoded in place
	grpc_health_v1.RegisterHealthServer(srv, &grpcHealth{s: s})
	reflection.Register(srv)
	return srv
}

// grpcUnary counts every unary call in the request metrics, with
// protocol="grpc" and the HTTP status the same request gets over HTTP, and
// turns the handlers' errors into gRPC statuses (grpcStatus).
func (s *Server) grpcUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	s.stats.inFlight.Inc()
	resp, err := handler(ctx, req)
	s.stats.inFlight.Dec()
	code := http.StatusOK
	if err != nil {
		code, err = grpcStatus(ctx, err)
	}
	s.stats.observeProto(s.grpcModelLabel(req), grpcEndpoint(info.FullMethod), code, protoGRPC, time.Since(start))
	return resp, err
}

// grpcModelLabel is the model label of a call: the model it names when
// this server has it, else "" (labels must not grow with what clients
// send).
func (s *Server) grpcModelLabel(req any) string {
	var name string
	switch r := req.(type) {
	case interface{ GetModelName() string }:
		name = r.GetModelName()
	case interface{ GetName() string }:
		name = r.GetName()
	}
	if name == "" || s.model(name) == nil {
		return ""
	}
	return name
}

// grpcEndpoint is the endpoint label of a gRPC method, as the HTTP route
// of the same call is labelled.
func grpcEndpoint(method string) string {
	switch method[strings.LastIndexByte(method, '/')+1:] {
	case "ModelInfer":
		return epInfer
	case "ServerLive", "ServerReady", "ModelReady", "Check", "List":
		return epHealth
	}
	return epMetadata
}

// exhausted marks an error that is ResourceExhausted over gRPC whatever
// its HTTP status: the memory budget full or a request over it.
type exhausted struct{ error }

func (e exhausted) Unwrap() error { return e.error }

// grpcStatus returns the HTTP status err carries and the gRPC status error
// the client gets:
//
//	400                    InvalidArgument
//	401 / 403              Unauthenticated / PermissionDenied
//	404                    NotFound
//	408, 504               DeadlineExceeded
//	413, 429               ResourceExhausted
//	503 queue full, overloaded, memory budget full
//	                       ResourceExhausted
//	503 cannot meet the deadline
//	                       DeadlineExceeded
//	503 otherwise (not ready, loading, closed)
//	                       Unavailable
//	other                  Internal
//
// A retry hint (RetryAfter) goes in the message and in the retry-after
// trailer, in whole seconds as HTTP's Retry-After.
func grpcStatus(ctx context.Context, err error) (int, error) {
	code, secs, err := grpcError(err)
	if secs != "" {
		grpc.SetTrailer(ctx, metadata.Pairs("retry-after", secs))
	}
	return code, err
}

// grpcError is grpcStatus without the trailer: the HTTP status, the retry
// hint in whole seconds ("" when none; grpcStatus puts it in the
// trailer, which a stream's response cannot have) and the status error.
func grpcError(err error) (int, string, error) {
	if st, ok := status.FromError(err); ok && !errors.As(err, new(*httperr.Error)) {
		return httperr.FromGRPC(st.Code()), "", err // grpc-go's own (a cancelled context)
	}
	code := httperr.Status(err)
	var c codes.Code
	switch code {
	case http.StatusBadRequest:
		c = codes.InvalidArgument
	case http.StatusUnauthorized:
		c = codes.Unauthenticated
	case http.StatusForbidden:
		c = codes.PermissionDenied
	case http.StatusNotFound:
		c = codes.NotFound
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		c = codes.DeadlineExceeded
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		c = codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		switch {
		case errors.Is(err, batcher.ErrQueueFull), errors.Is(err, batcher.ErrOverloaded), errors.As(err, new(exhausted)):
			c = codes.ResourceExhausted
		case errors.Is(err, batcher.ErrCannotMeetDeadline):
			c = codes.DeadlineExceeded
		default:
			c = codes.Unavailable
		}
	default:
		c = codes.Internal
	}
	msg, secs := err.Error(), ""
	if d := httperr.RetryAfter(err); d > 0 || code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		secs = retryAfter(err)
		msg += " (retry after " + secs + "s)"
	}
	return code, secs, status.Error(c, msg)
}

// grpcGuard asks package auth whether a call may go on, as guard does for
// an HTTP request: the key from the authorization ("Bearer KEY") or
// x-api-key metadata, the tenant from x-inferd-tenant, model the model the
// call names (nil: none). Health calls are not asked about.
func (s *Server) grpcGuard(ctx context.Context, model []byte) error {
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) []byte {
		if v := md.Get(k); len(v) > 0 {
			return []byte(v[0])
		}
		return nil
	}
	return s.auth.Check(auth.Request{
		Authorization: first("authorization"),
		APIKey:        first("x-api-key"),
		Tenant:        first(strings.ToLower(HeaderTenant)),
		Model:         model,
	})
}

// grpcModel checks the call's key for the model name names, and acquires
// that model (version "" or "1"); the caller releases it. Its errors are
// the HTTP routes'.
func (s *Server) grpcModel(ctx context.Context, name, version string) (*host.Model, error) {
	if err := s.grpcGuard(ctx, []byte(name)); err != nil {
		return nil, err
	}
	m := s.models.Acquire(name)
	if m == nil {
		if s.loading.Load() && s.configured(name) {
			return nil, httperr.Errorf(http.StatusServiceUnavailable, "model %q is loading", name)
		}
		return nil, httperr.Errorf(http.StatusNotFound, "unknown model %q (this server has %s)", name, s.modelList())
	}
	if version != "" && version != "1" {
		m.Release()
		return nil, httperr.Errorf(http.StatusNotFound, "model %q has no version %q (it has version 1)", name, version)
	}
	return m, nil
}

// ServerLive answers as GET /v2/health/live: always live, no key needed.
func (g *grpcService) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers as GET /v2/health/ready, no key needed: ready once
// every model is, until the drain starts.
func (g *grpcService) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return &inferencepb.ServerReadyResponse{Ready: g.s.Ready()}, nil
}

// ModelReady answers as GET /v2/models/M/ready.
func (g *grpcService) ModelReady(ctx context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	m, err := g.s.grpcModel(ctx, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	defer m.Release()
	return &inferencepb.ModelReadyResponse{Ready: m.Ready() && !g.s.draining.Load()}, nil
}

// ServerMetadata answers as GET /v2.
func (g *grpcService) ServerMetadata(ctx context.Context, _ *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	if err := g.s.grpcGuard(ctx, nil); err != nil {
		return nil, err
	}
	return &inferencepb.ServerMetadataResponse{Name: "inferd", Version: Version,
		Extensions: []string{"classification", "model_configuration", "statistics", "model_repository"}}, nil
}

// ModelMetadata answers as GET /v2/models/M.
func (g *grpcService) ModelMetadata(ctx context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	m, err := g.s.grpcModel(ctx, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	defer m.Release()
	md := &inferencepb.ModelMetadataResponse{Name: m.Name, Versions: []string{"1"}, Platform: "onnxruntime_onnx"}
	for _, t := range m.Inputs() {
		md.Inputs = append(md.Inputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range m.Outputs() {
		md.Outputs = append(md.Outputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return md, nil
}

// RepositoryIndex answers as POST /v2/repository/index: every model with
// its state, or the ready ones only.
func (g *grpcService) RepositoryIndex(ctx context.Context, req *inferencepb.RepositoryIndexRequest) (*inferencepb.RepositoryIndexResponse, error) {
	if err := g.s.grpcGuard(ctx, nil); err != nil {
		return nil, err
	}
	resp := &inferencepb.RepositoryIndexResponse{}
	for _, m := range g.s.Models() {
		e := &inferencepb.RepositoryIndexResponse_ModelIndex{Name: m.Name, Version: "1", State: "READY"}
		if !m.Ready() {
			e.State, e.Reason = "UNAVAILABLE", "not ready"
		}
		if req.Ready && e.State != "READY" {
			continue
		}
		resp.Models = append(resp.Models, e)
	}
	return resp, nil
}

// RepositoryModelLoad is refused as POST /v2/repository/models/M/load is.
func (g *grpcService) RepositoryModelLoad(ctx context.Context, req *inferencepb.RepositoryModelLoadRequest) (*inferencepb.RepositoryModelLoadResponse, error) {
	return nil, g.modelControl(ctx, req.ModelName, "load")
}

// RepositoryModelUnload is refused as POST /v2/repository/models/M/unload is.
func (g *grpcService) RepositoryModelUnload(ctx context.Context, req *inferencepb.RepositoryModelUnloadRequest) (*inferencepb.RepositoryModelUnloadResponse, error) {
	return nil, g.modelControl(ctx, req.ModelName, "unload")
}

func (g *grpcService) modelControl(ctx context.Context, name, action string) error {
	if err := g.s.grpcGuard(ctx, []byte(name)); err != nil {
		return err
	}
	return httperr.Errorf(http.StatusBadRequest, "%s of model %q refused: inferd serves the models its config file lists (%s); change the file and send the replica SIGHUP", action, name, g.s.modelList())
}

// grpcHealth is grpc.health.v1 over the server's readiness: "" and
// "inference.GRPCInferenceService" are SERVING when Ready (every model
// loaded and ready, no drain), NOT_SERVING otherwise. No key is needed.
type grpcHealth struct {
	grpc_health_v1.UnimplementedHealthServer
	s *Server
}

// grpcServiceName is the inference service's full name.
var grpcServiceName = inferencepb.GRPCInferenceService_ServiceDesc.ServiceName

// healthPoll is how often a Watch looks at readiness.
const healthPoll = 250 * time.Millisecond

func (h *grpcHealth) status(service string) (grpc_health_v1.HealthCheckResponse_ServingStatus, error) {
	if service != "" && service != grpcServiceName {
		return 0, status.Errorf(codes.NotFound, "unknown service %q (this server has %q and %q)", service, "", grpcServiceName)
	}
	if h.s.Ready() {
		return grpc_health_v1.HealthCheckResponse_SERVING, nil
	}
	return grpc_health_v1.HealthCheckResponse_NOT_SERVING, nil
}

// Check answers the service's status now.
func (h *grpcHealth) Check(_ context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	st, err := h.status(req.Service)
	if err != nil {
		return nil, err
	}
	return &grpc_health_v1.HealthCheckResponse{Status: st}, nil
}

// List answers the status of both services.
func (h *grpcHealth) List(context.Context, *grpc_health_v1.HealthListRequest) (*grpc_health_v1.HealthListResponse, error) {
	st, _ := h.status("")
	return &grpc_health_v1.HealthListResponse{Statuses: map[string]*grpc_health_v1.HealthCheckResponse{
		"": {Status: st}, grpcServiceName: {Status: st},
	}}, nil
}

// Watch sends the status, then each change (looked at every healthPoll),
// until the client goes or StopGRPC begins (then NOT_SERVING, last). An
// unknown service is SERVICE_UNKNOWN, as the protocol asks.
func (h *grpcHealth) Watch(req *grpc_health_v1.HealthCheckRequest, stream grpc_health_v1.Health_WatchServer) error {
	h.s.grpc.mu.Lock()
	stop := h.s.grpc.stop
	h.s.grpc.mu.Unlock()
	last := grpc_health_v1.HealthCheckResponse_ServingStatus(-1)
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		st, err := h.status(req.Service)
		if err != nil {
			st = grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN
		}
		if st != last {
			if err := stream.Send(&grpc_health_v1.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-stop:
			if last != grpc_health_v1.HealthCheckResponse_NOT_SERVING && err == nil {
				stream.Send(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_NOT_SERVING})
			}
			return status.Error(codes.Unavailable, "server shutting down")
		case <-tick.C:
		}
	}
}
