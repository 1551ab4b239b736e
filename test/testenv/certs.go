package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"time"

	"github.com/fleetmesh/fleetmesh/pkg/pki"
)

// apiServerCerts writes, into dir, what kube-apiserver serves with when
// real pods reach it: a CA (ca.crt, which pods get as kube-root-ca.crt), a
// serving certificate valid for the addresses pods and nodes dial (the
// kubernetes Service's ClusterIP and DNS names, the listen address), and
// the service account signing key pair. envtest uses these files as they
// are when they exist; it returns the CA in PEM.
func apiServerCerts(dir string, addresses []string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	now, validity := time.Now(), 10*24*time.Hour
	ca, caKey, err := pki.IssueCA("fleetmesh-test-ca", now, validity)
	if err != nil {
		return nil, err
	}
	hosts := append([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, addresses...)
	der, key, err := pki.IssueServing("kube-apiserver", hosts, now, validity, ca, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	caPEM := pki.PEMCert(ca.Raw)
	for name, data := range map[string][]byte{
		"ca.crt":        caPEM,
		"apiserver.crt": pki.PEMCert(der),
		"apiserver.key": pki.PEMKey(key),
		"sa-signer.crt": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"sa-signer.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}
