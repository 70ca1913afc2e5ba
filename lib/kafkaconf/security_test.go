package kafkaconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aluminiapp/pipeline/lib/kafkatest"
)

// selfSigned makes a CA-less certificate for 127.0.0.1 and writes it as
// the CA file a client trusts.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafka.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"kafka.test"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca
}

// TestTLSAndSCRAM runs topic creation, a write, a read and the readiness
// ping against a broker that accepts only TLS with SCRAM-SHA-512, through
// the flags an operator would set, and checks that a wrong password or an
// untrusted certificate is refused rather than ignored.
func TestTLSAndSCRAM(t *testing.T) {
	cert, caFile := selfSigned(t)
	_, addr := kafkatest.Start(t,
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "alumini", "s3cret"))

	configFor := func(args ...string) *Config {
		t.Helper()
		var c Config
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := fs.Parse(append([]string{"-kafka-brokers", addr}, args...)); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	good := configFor("-kafka-tls", "-kafka-tls-ca-file", caFile,
		"-kafka-sasl-mechanism", "SCRAM-SHA-512", "-kafka-sasl-username", "alumini", "-kafka-sasl-password", "s3cret")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := good.Ping(ctx); err != nil {
		t.Fatalf("Ping over TLS+SCRAM = %v; want nil", err)
	}
	if err := good.EnsureTopics(ctx, "secure"); err != nil {
		t.Fatalf("EnsureTopics over TLS+SCRAM = %v", err)
	}
	w := &kafka.Writer{Addr: good.Addr(), Topic: "secure", Transport: good.Transport(), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("hit")}); err != nil {
		t.Fatalf("write over TLS+SCRAM = %v", err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: good.BrokerList(), Topic: "secure", GroupID: "g", Dialer: good.Dialer(5 * time.Second), MaxWait: 50 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil || string(m.Value) != "hit" {
		t.Fatalf("read over TLS+SCRAM = %q, %v; want hit", m.Value, err)
	}

	// The franz-go options (the enricher's state topics) reach it too.
	cl, err := kgo.NewClient(append(good.FranzOpts(), kgo.ConsumeTopics("secure"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "secure", Value: []byte("state")}).FirstErr(); err != nil {
		t.Fatalf("franz-go produce over TLS+SCRAM = %v", err)
	}
	var got []string
	for len(got) < 2 {
		fetches := cl.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("franz-go fetch over TLS+SCRAM: %v", errs)
		}
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	slices.Sort(got) // the two records may sit in different partitions
	if got[0] != "hit" || got[1] != "state" {
		t.Errorf("franz-go read %q; want hit and state", got)
	}

	for name, bad := range map[string]*Config{
		"wrong password": configFor("-kafka-tls", "-kafka-tls-ca-file", caFile,
			"-kafka-sasl-mechanism", "SCRAM-SHA-512", "-kafka-sasl-username", "alumini", "-kafka-sasl-password", "guess"),
		"untrusted certificate": configFor("-kafka-tls",
			"-kafka-sasl-mechanism", "SCRAM-SHA-512", "-kafka-sasl-username", "alumini", "-kafka-sasl-password", "s3cret"),
		"plaintext": configFor(),
	} {
		if err := bad.Ping(ctx); err == nil {
			t.Errorf("%s: Ping = nil; want the broker to refuse", name)
		}
	}
}

func TestSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Security
		want string
	}{
		{Security{TLSCAFile: "ca.pem"}, "need -kafka-tls"},
		{Security{TLS: true, TLSCAFile: "/nonexistent/ca.pem"}, "kafka-tls-ca-file"},
		{Security{TLS: true, TLSCertFile: "c.pem"}, "go together"},
		{Security{SASLMechanism: "GSSAPI", SASLUsername: "u"}, "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{Security{SASLMechanism: "PLAIN"}, "kafka-sasl-username"},
		{Security{SASLUsername: "u"}, "set -kafka-sasl-mechanism"},
	} {
		c := Config{Brokers: "a:9092", RawTopic: "r", EnrichedTopic: "e", DeadLetterTopic: "d", Partitions: 1, ReplicationFactor: 1, Security: tc.s}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v; want an error mentioning %q", tc.s, err, tc.want)
		}
	}
}
