// Package tlsfiles builds the client TLS configuration the services use
// towards Kafka and ClickHouse from the PEM files an operator points at.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Client is a TLS 1.2+ client configuration. caFile, when set, replaces
// the system's CAs; certFile and keyFile, set together, are the client
// certificate for mutual TLS; serverName, when set, is the name checked in
// the server's certificate. Errors name the flag at fault, as
// flagPrefix+"-ca-file", "-cert-file" or "-key-file".
func Client(flagPrefix, caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s-ca-file: %w", flagPrefix, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s-ca-file %s: no PEM certificate in it", flagPrefix, caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%s-cert-file and %s-key-file go together", flagPrefix, flagPrefix)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s-cert-file: %w", flagPrefix, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
