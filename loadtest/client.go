package loadtest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
)

// tlsConfig is the TLS configuration of the load and the probes: the
// system's roots, plus caFile's certificates when it is set. vegeta's own
// default skips verification; the load verifies as the probes do.
func tlsConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return &tls.Config{}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca certificates: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca certificates: no PEM certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: roots}, nil
}

// prober sends the requests around a load (metadata, /metrics,
// statistics) to base, with the load's headers and TLS roots.
type prober struct {
	base   string
	header http.Header
	client *http.Client
}

// newProber returns a prober of base; a nil tlsConf means the system's
// roots.
func newProber(base string, header http.Header, tlsConf *tls.Config) *prober {
	pr := &prober{base: base, header: header, client: probeClient}
	if tlsConf != nil && tlsConf.RootCAs != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsConf
		pr.client = &http.Client{Timeout: probeTimeout, Transport: tr}
	}
	return pr
}

// mergeHeaders sets src's headers in dst, each replacing any of its name.
func mergeHeaders(dst, src http.Header) {
	for name, values := range src {
		dst[textproto.CanonicalMIMEHeaderKey(name)] = values
	}
}

// setHeaders sets h's headers on req; a Host header names the request's
// host, as vegeta does for the load.
func setHeaders(req *http.Request, h http.Header) {
	mergeHeaders(req.Header, h)
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}
}

// untrusted wraps an error of an https target whose certificate no root
// trusts with what to do about it.
func untrusted(base string, err error) error {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("target %s: certificate not trusted: %w (give the CA that signed it: -cacert FILE, Config.CACert)", base, err)
	}
	return nil
}
