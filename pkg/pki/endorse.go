package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
)

// A CA's endorsement of the CA that follows it: the old key's signature
// of the new certificate. A member of the fleet that trusts a member's
// old CA trusts its new one by it, without taking the word of whoever
// carried the new one there (the federation): see FleetTrust.

// EndorsementBlock is the PEM type of an endorsement; its headers name
// the certificate endorsed and the one that endorses it (Fingerprint),
// its bytes are the endorsing key's ECDSA signature (ASN.1) of the SHA-256
// of the endorsed certificate's DER.
const EndorsementBlock = "FLEETMESH ENDORSEMENT"

// Endorse is by's endorsement of cert, in PEM.
func Endorse(by *CA, cert *x509.Certificate) ([]byte, error) {
	if by == nil || by.Key == nil || by.Cert == nil {
		return nil, errors.New("no CA key to endorse with")
	}
	sum := sha256.Sum256(cert.Raw)
	sig, err := ecdsa.SignASN1(rand.Reader, by.Key, sum[:])
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: EndorsementBlock, Headers: map[string]string{
		"Endorses": Fingerprint(cert), "By": Fingerprint(by.Cert),
	}, Bytes: sig}), nil
}

// Endorsed reports whether data (PEM) holds an endorsement of cert by one
// of trusted, whose signature checks.
func Endorsed(cert *x509.Certificate, data []byte, trusted []*x509.Certificate) bool {
	fp := Fingerprint(cert)
	sum := sha256.Sum256(cert.Raw)
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return false
		}
		if block.Type != EndorsementBlock || block.Headers["Endorses"] != fp {
			continue
		}
		i := slices.IndexFunc(trusted, func(c *x509.Certificate) bool { return Fingerprint(c) == block.Headers["By"] })
		if i < 0 {
			continue
		}
		if pub, ok := trusted[i].PublicKey.(*ecdsa.PublicKey); ok && ecdsa.VerifyASN1(pub, sum[:], block.Bytes) {
			return true
		}
	}
}

// Endorsements are the endorsement blocks of data that endorse one of
// certs: what is left of a CA's endorsements once the certificates they
// endorse are gone.
func Endorsements(data []byte, certs []*x509.Certificate) []byte {
	var out []byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type == EndorsementBlock && slices.ContainsFunc(certs, func(c *x509.Certificate) bool { return Fingerprint(c) == block.Headers["Endorses"] }) {
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
}
