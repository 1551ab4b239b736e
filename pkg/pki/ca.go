package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
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
	return []byte(PEMCerts(ca.Bundle))
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
	// Retire says when each certificate of the bundle that no longer
	// signs stops being trusted, by Fingerprint: once every certificate
	// it signed has expired.
	Retire map[string]time.Time
	// Endorsements (PEM, EndorsementBlock) are the signatures with which
	// each CA endorsed the one staged after it: the proof other members
	// trust a renewed CA by.
	Endorsements []byte
}

// Roots are what must be trusted: the bundle and the staged next CA.
func (f CAFiles) Roots() []byte {
	return append(append([]byte{}, f.Bundle...), f.NextCert...)
}

// Fingerprint names a certificate: the SHA-256 of its DER, in hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// StageOptions say how StageCA renews a CA.
type StageOptions struct {
	// Validity is a new CA's life.
	Validity time.Duration
	// Overlap is how long a staged CA is trusted before it signs.
	Overlap time.Duration
	// MaxTTL is the longest life of a certificate the CA signs: a CA
	// that no longer signs is trusted that long after, and no longer.
	MaxTTL time.Duration
	// Rotate asks for a new CA, staged as a renewal is.
	Rotate bool
	// Emergency asks for a new CA that signs at once and is the only one
	// trusted: the old key is compromised. What the old CA signed is
	// refused from then on; the workloads need new certificates.
	Emergency bool
}

// StageCA renews a CA in two steps, so that whatever trusts its roots
// trusts a new CA before any certificate it signed is shown. A CA is
// staged (published in Roots, not signing) when the newest has less than
// a third of validity left, or when o.Rotate asks; it takes over signing
// once it has been published for o.Overlap, and the old certificates stay
// in the bundle until every certificate they signed has expired
// (o.MaxTTL after they stopped signing; what was stored without that
// time gets it now). o.Emergency replaces the CA at once. A CA that has no
// usable key is made at once. It returns the files (changed when they
// must be stored) and the CA that signs now.
func StageCA(name string, files CAFiles, now time.Time, o StageOptions) (CAFiles, *CA, bool, error) {
	ca := ParseCA(files.Bundle, files.Key)
	next := ParseCA(files.NextCert, files.NextKey)
	// What a promotion keeps of the files: retire gives the CA that stops
	// signing its time.
	retiring, endorsements := files.Retire, files.Endorsements
	changed := false
	switch {
	case o.Emergency:
		// No endorsement: the compromised key vouches for nothing. The
		// fleet's other members trust the new CA once their operators
		// approve it.
		fresh, err := issueCA(name, now, o.Validity)
		if err != nil {
			return files, nil, false, err
		}
		files, retiring, endorsements = CAFiles{Bundle: fresh.BundlePEM(), Key: PEMKey(fresh.Key)}, nil, nil
		changed = true
	case ca.Cert == nil || ca.Key == nil || !ca.Cert.NotAfter.After(now):
		// Nothing signs: the staged CA if there is one, else a new one.
		if next.Cert == nil || next.Key == nil {
			var err error
			if next, err = issueCA(name, now, o.Validity); err != nil {
				return files, nil, false, err
			}
		}
		files, changed = promote(ca, next, now), true
	case next.Cert != nil && next.Key != nil && !now.Before(files.NextSince.Add(o.Overlap)):
		files, changed = promote(ca, next, now), true
	case (next.Cert == nil || next.Key == nil) && (Fresh(ca.Cert, now) < 1.0/3 || o.Rotate):
		staged, err := issueCA(name, now, o.Validity)
		if err != nil {
			return files, nil, false, err
		}
		// The CA that signs now vouches for the one that follows it.
		endorsement, err := Endorse(ca, staged.Cert)
		if err != nil {
			return files, nil, false, err
		}
		files.NextCert, files.NextKey, files.NextSince = staged.BundlePEM(), PEMKey(staged.Key), now
		endorsements = append(endorsements, endorsement...)
		changed = true
	}
	files.Retire = retiring
	var retired bool
	if files, retired = retire(files, now, o.MaxTTL); retired {
		changed = true
	}
	// Endorsements of what is no longer trusted go with it.
	files.Endorsements = Endorsements(endorsements, ParseCerts(files.Roots()))
	if !bytes.Equal(files.Endorsements, endorsements) {
		changed = true
	}
	return files, ParseCA(files.Bundle, files.Key), changed, nil
}

// retire drops the certificates of the bundle that no longer sign and
// whose time is up, and gives a time to those that have none.
func retire(files CAFiles, now time.Time, maxTTL time.Duration) (CAFiles, bool) {
	ca := ParseCA(files.Bundle, files.Key)
	changed := false
	var kept []*x509.Certificate
	retire := map[string]time.Time{}
	for _, c := range ca.Bundle {
		if c == ca.Cert {
			kept = append(kept, c)
			continue
		}
		fp := Fingerprint(c)
		at, ok := files.Retire[fp]
		if !ok {
			at, changed = now.Add(maxTTL), true
		}
		if !now.Before(at) || !c.NotAfter.After(now) {
			changed = true
			continue
		}
		kept = append(kept, c)
		retire[fp] = at
	}
	if len(retire) != len(files.Retire) {
		changed = true
	}
	if !changed {
		return files, false
	}
	files.Bundle = (&CA{Bundle: kept}).BundlePEM()
	files.Retire = retire
	if len(retire) == 0 {
		files.Retire = nil
	}
	return files, true
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

// ServiceHosts are the names a serving certificate of the Service name in
// namespace carries: every name a client in the cluster may dial it by.
func ServiceHosts(name, namespace string) []string {
	return []string{name, name + "." + namespace, name + "." + namespace + ".svc", name + "." + namespace + ".svc.cluster.local"}
}
