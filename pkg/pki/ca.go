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
	next, err := issueCA(name, now, validity)
	if err != nil {
		return nil, nil, nil, false, err
	}
	files := promote(ca, next, now)
	return ParseCA(files.Bundle, files.Key), files.Bundle, files.Key, true, nil
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

// CAFiles are a CA as its Secret keeps it, renewal under way included.
type CAFiles struct {
	// Bundle is every certificate still trusted, oldest first; Key the
	// newest one's key, which signs.
	Bundle, Key []byte
	// NextCert and NextKey are a renewed CA staged: trusted (its
	// certificate is published with the roots) but not signing yet, from
	// NextSince on.
	NextCert, NextKey []byte
	NextSince         time.Time
}

// Roots are what must be trusted: the bundle and the staged next CA.
func (f CAFiles) Roots() []byte {
	return append(append([]byte{}, f.Bundle...), f.NextCert...)
}

// StageCA renews a CA in two steps, so that whatever trusts its roots
// trusts a new CA before any certificate it signed is shown. A CA is
// staged (published in Roots, not signing) when the newest has less than
// a third of validity left, or when rotate asks; it takes over signing
// once it has been published for overlap, and the old certificates stay
// in the bundle until they expire. A CA that has no usable key is made
// at once. It returns the files (changed when they must be stored) and
// the CA that signs now.
func StageCA(name string, files CAFiles, now time.Time, validity, overlap time.Duration, rotate bool) (CAFiles, *CA, bool, error) {
	ca := ParseCA(files.Bundle, files.Key)
	next := ParseCA(files.NextCert, files.NextKey)
	switch {
	case ca.Cert == nil || ca.Key == nil || !ca.Cert.NotAfter.After(now):
		// Nothing signs: the staged CA if there is one, else a new one.
		if next.Cert == nil || next.Key == nil {
			var err error
			if next, err = issueCA(name, now, validity); err != nil {
				return files, nil, false, err
			}
		}
		files = promote(ca, next, now)
	case next.Cert != nil && next.Key != nil && !now.Before(files.NextSince.Add(overlap)):
		files = promote(ca, next, now)
	case (next.Cert == nil || next.Key == nil) && (Fresh(ca.Cert, now) < 1.0/3 || rotate):
		staged, err := issueCA(name, now, validity)
		if err != nil {
			return files, nil, false, err
		}
		files.NextCert, files.NextKey, files.NextSince = staged.BundlePEM(), PEMKey(staged.Key), now
	default:
		return files, ca, false, nil
	}
	return files, ParseCA(files.Bundle, files.Key), true, nil
}

// promote makes next the CA that signs, keeping the unexpired
// certificates of ca trusted.
func promote(ca, next *CA, now time.Time) CAFiles {
	var kept []*x509.Certificate
	for _, c := range ca.Bundle {
		if c.NotAfter.After(now) {
			kept = append(kept, c)
		}
	}
	signer := &CA{Bundle: append(kept, next.Cert), Cert: next.Cert, Key: next.Key}
	return CAFiles{Bundle: signer.BundlePEM(), Key: PEMKey(next.Key)}
}

func issueCA(name string, now time.Time, validity time.Duration) (*CA, error) {
	cert, key, err := IssueCA(name, now, validity)
	if err != nil {
		return nil, err
	}
	return &CA{Bundle: []*x509.Certificate{cert}, Cert: cert, Key: key}, nil
}
