package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"time"
)

// CA is a certificate authority kept as PEM (in a Secret): the newest
// certificate signs; older ones stay in the bundle, trusted until they
// expire, so what they signed stays valid through a renewal.
type CA struct {
	// Bundle is every certificate still trusted, oldest first.
	Bundle []*x509.Certificate
	Cert   *x509.Certificate
	Key    *ecdsa.PrivateKey
}

// BundlePEM is the bundle in PEM, oldest first.
func (ca *CA) BundlePEM() []byte {
	var out []byte
	for _, c := range ca.Bundle {
		out = append(out, PEMCert(c.Raw)...)
	}
	return out
}

// EnsureCA reads a CA from its bundle and its newest key in PEM, and
// issues a new one named name, valid for validity, when there is none or
// the newest has less than a third of its validity left; the new PEM is
// returned with changed set, to be stored.
func EnsureCA(name string, bundlePEM, keyPEM []byte, now time.Time, validity time.Duration) (ca *CA, outBundle, outKey []byte, changed bool, err error) {
	ca = ParseCA(bundlePEM, keyPEM)
	if ca.Cert != nil && ca.Key != nil && Fresh(ca.Cert, now) >= 1.0/3 {
		return ca, bundlePEM, keyPEM, false, nil
	}
	cert, key, err := IssueCA(name, now, validity)
	if err != nil {
		return nil, nil, nil, false, err
	}
	var kept []*x509.Certificate
	for _, c := range ca.Bundle {
		if c.NotAfter.After(now) {
			kept = append(kept, c)
		}
	}
	ca = &CA{Bundle: append(kept, cert), Cert: cert, Key: key}
	return ca, ca.BundlePEM(), PEMKey(key), true, nil
}

// ParseCA reads a CA bundle (oldest first) and the newest certificate's
// key; Cert and Key are nil unless the key belongs to the newest.
func ParseCA(bundlePEM, keyPEM []byte) *CA {
	ca := &CA{Bundle: ParseCerts(bundlePEM)}
	block, _ := pem.Decode(keyPEM)
	if block == nil || len(ca.Bundle) == 0 {
		return ca
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return ca
	}
	newest := ca.Bundle[len(ca.Bundle)-1]
	if pub, ok := newest.PublicKey.(*ecdsa.PublicKey); ok && pub.Equal(&key.PublicKey) {
		ca.Cert, ca.Key = newest, key
	}
	return ca
}

// ParseCerts reads every certificate of a PEM bundle, skipping what is not
// one.
func ParseCerts(data []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			certs = append(certs, c)
		}
	}
}

// ParseCert reads the first certificate of PEM data, or nil.
func ParseCert(data []byte) *x509.Certificate {
	if certs := ParseCerts(data); len(certs) > 0 {
		return certs[0]
	}
	return nil
}

// Fresh is the share of a certificate's validity still ahead.
func Fresh(c *x509.Certificate, now time.Time) float64 {
	total := c.NotAfter.Sub(c.NotBefore)
	if total <= 0 {
		return 0
	}
	return float64(c.NotAfter.Sub(now)) / float64(total)
}

// ErrUnsupportedKey is a public key a workload certificate cannot carry.
var ErrUnsupportedKey = errors.New("unsupported key type: use ECDSA (P-256, P-384, P-521), RSA (3072 or 4096 bits) or Ed25519")

// Workload is the template of a workload's certificate: its identity is
// the URI (a SPIFFE ID), for client and server authentication, valid from
// notBefore to notAfter. Callers may add a subject or DNS names.
func Workload(id *url.URL, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id},
	}
}

// Sign issues the certificate of tmpl for pub, signed by ca, in DER; pub
// must be ECDSA, Ed25519 or RSA of 3072 or 4096 bits.
func Sign(tmpl *x509.Certificate, pub crypto.PublicKey, ca *CA) ([]byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n != 3072 && n != 4096 {
			return nil, ErrUnsupportedKey
		}
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	default:
		return nil, ErrUnsupportedKey
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}
