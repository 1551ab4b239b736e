package testenv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/model"
)

// RequestPodCertificate does the kubelet's side of a podCertificate
// projected volume, for clusters whose pods are stand-ins (a real node's
// kubelet does it itself): it makes a P-256 key, asks signerName for a
// certificate for the pod (with the pod's, its ServiceAccount's and its
// node's names and UIDs, as the kubelet does), and waits until the
// request is answered. It returns the answered request and the key.
func (c *Cluster) RequestPodCertificate(ctx context.Context, ns, podName, signerName string, maxSeconds int32) (*certificatesv1.PodCertificateRequest, crypto.Signer, error) {
	pod := &corev1.Pod{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: podName}, pod); err != nil {
		return nil, nil, err
	}
	sa := &corev1.ServiceAccount{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod.Spec.ServiceAccountName}, sa); err != nil {
		return nil, nil, err
	}
	node := &corev1.Node{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, err
	}
	req := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: podName + "-"},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName: signerName, PodName: pod.Name, PodUID: pod.UID,
			ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID,
			NodeName: types.NodeName(node.Name), NodeUID: node.UID,
			MaxExpirationSeconds: &maxSeconds, StubPKCS10Request: csr,
		},
	}
	if err := c.Client.Create(ctx, req); err != nil {
		return nil, nil, fmt.Errorf("request a certificate for pod %s/%s: %w", ns, podName, err)
	}
	err = Eventually(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(req), req); err != nil {
			return false, err
		}
		for _, t := range []string{certificatesv1.PodCertificateRequestConditionTypeIssued, certificatesv1.PodCertificateRequestConditionTypeDenied, certificatesv1.PodCertificateRequestConditionTypeFailed} {
			if meta.IsStatusConditionTrue(req.Status.Conditions, t) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("the certificate request %s/%s was never answered: %w", ns, req.Name, err)
	}
	return req, key, nil
}

// WriteProjected writes files into dir as the kubelet writes a projected
// volume (a stand-in for it): into a new timestamped directory, made
// current by renaming the ..data symlink onto it in one step, with each
// file a symlink through ..data. A reader that watches dir sees every
// file change at once.
func WriteProjected(dir string, files map[string][]byte) error {
	ts, err := os.MkdirTemp(dir, "..data_")
	if err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// WriteIdentity does what the kubelet does for a pod's identity volume (a
// stand-in): it asks signerName for the pod's certificate and writes dir
// as the volume would be, with the files files makes of the PEM key and
// certificate chain. It returns the certificate with its key.
func (c *Cluster) WriteIdentity(ctx context.Context, ns, pod, signerName, dir string, files func(key, chain []byte) (map[string][]byte, error)) (tls.Certificate, error) {
	req, key, err := c.RequestPodCertificate(ctx, ns, pod, signerName, 3600)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair([]byte(req.Status.CertificateChain), keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	contents, err := files(keyPEM, []byte(req.Status.CertificateChain))
	if err != nil {
		return tls.Certificate{}, err
	}
	return cert, WriteProjected(dir, contents)
}

// ServerSPIFFEID is the xDS server's SPIFFE ID in the trust domain
// cluster.local, when fleetmesh runs in namespace ns: what sidecars are
// told to expect.
func ServerSPIFFEID(ns string) string {
	id, err := model.WorkloadID("cluster.local", ns, "fleetmesh-controller")
	if err != nil {
		panic(err) // a namespace the test chose
	}
	return id.String()
}
