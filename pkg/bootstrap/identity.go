package bootstrap

import (
	"fmt"
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpccredentialv3 "github.com/envoyproxy/go-control-plane/envoy/config/grpc_credential/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Files of a proxy's identity directory: what the pod's projected volume
// holds (the kubelet writes the key and the certificate from its
// podCertificate source, and the roots from its clusterTrustBundle
// source), and the two SDS files that point Envoy at them.
const (
	KeyFile = "key.pem"
	// TokenFile is the ServiceAccount token, where pods present one
	// instead of a certificate (Options.Token), for TokenAudience.
	TokenFile       = "token"
	CertFile        = "cert.pem"
	RootsFile       = "roots.pem"
	IdentitySDSFile = "identity-sds.json"
	RootsSDSFile    = "roots-sds.json"
	identitySecret  = "fleetmesh-identity"
	rootsSecret     = "fleetmesh-roots"
)

// SDSFiles are the contents of the two SDS files of an identity directory
// dir: the proxy's certificate and key, and the roots with the identity
// the xDS server must have (its SPIFFE ID). Envoy reads them as
// file-based SDS and watches dir, so a renewed certificate (the kubelet
// swaps the volume's files at once) is used without a restart.
func SDSFiles(dir, serverID string) (identity, roots []byte, err error) {
	watched := &corev3.WatchedDirectory{Path: dir}
	file := func(name string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: filepath.Join(dir, name)}}
	}
	identity, err = sdsFile(&tlsv3.Secret{Name: identitySecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: file(CertFile), PrivateKey: file(KeyFile), WatchedDirectory: watched,
	}}})
	if err != nil {
		return nil, nil, err
	}
	roots, err = sdsFile(&tlsv3.Secret{Name: rootsSecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: file(RootsFile), WatchedDirectory: watched,
		MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: serverID}},
		}},
	}}})
	return identity, roots, err
}

// IdentityFiles are the files of an identity directory dir, as a pod's
// identity volume holds them: the key, the certificate chain and the
// roots, and the SDS files naming them and the xDS server's SPIFFE ID.
func IdentityFiles(dir, serverID string, key, chain, roots []byte) (map[string][]byte, error) {
	identity, rootsSDS, err := SDSFiles(dir, serverID)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		KeyFile: key, CertFile: chain, RootsFile: roots,
		IdentitySDSFile: identity, RootsSDSFile: rootsSDS,
	}, nil
}

func sdsFile(secret *tlsv3.Secret) ([]byte, error) {
	if err := secret.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: SDS secret %s: %w", secret.GetName(), err)
	}
	a, err := anypb.New(secret)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(&discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{a}})
}

// sdsConfig is the SDS config of secret, read from file of the identity
// directory dir, which Envoy watches.
func sdsConfig(dir, secret, file string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: secret, SdsConfig: &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
			Path: filepath.Join(dir, file), WatchedDirectory: &corev3.WatchedDirectory{Path: dir},
		}},
	}}
}

// IdentitySDS is the proxy's certificate and key, from the identity
// directory dir (its IdentitySDSFile): for the xDS server and for mesh
// mTLS alike.
func IdentitySDS(dir string) *tlsv3.SdsSecretConfig {
	return sdsConfig(dir, identitySecret, IdentitySDSFile)
}

// RootsSDS is the roots the proxy checks peers with, from the identity
// directory dir (its RootsSDSFile, which also names the xDS server's
// identity).
func RootsSDS(dir string) *tlsv3.SdsSecretConfig {
	return sdsConfig(dir, rootsSecret, RootsSDSFile)
}

// TLSTransportSocket is a transport socket of Envoy's TLS, tlsContext its
// UpstreamTlsContext or DownstreamTlsContext.
func TLSTransportSocket(tlsContext proto.Message) (*corev3.TransportSocket, error) {
	tc, err := anypb.New(tlsContext)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tc}}, nil
}

// xdsTransportSocket is TLS to the xDS server with the proxy's identity,
// both from the SDS files of dir.
func xdsTransportSocket(dir, serverName string) (*corev3.TransportSocket, error) {
	return TLSTransportSocket(&tlsv3.UpstreamTlsContext{
		Sni: serverName,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"h2"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{IdentitySDS(dir)},
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: RootsSDS(dir)},
		},
	})
}

// TokenAudience is the audience of the ServiceAccount tokens proxies
// present to the xDS server: a token made for the API server (or any
// other audience) is not accepted, and one made for fleetmesh is not
// accepted by the API server.
const TokenAudience = "fleetmesh"

const fileBasedMetadata = "envoy.grpc_credentials.file_based_metadata"

// tokenGRPCService is the ADS server reached by Envoy's Google gRPC
// client: TLS checked against the roots of dir for serverName, and the
// token of dir sent with every stream (the file_based_metadata call
// credentials read the file for each one, so a renewed token is used on
// the next reconnection).
func tokenGRPCService(dir, serverName, address string) *corev3.GrpcService {
	file := func(name string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: filepath.Join(dir, name)}}
	}
	metadata, err := anypb.New(&grpccredentialv3.FileBasedMetadataConfig{
		SecretData: file(TokenFile), HeaderKey: "authorization", HeaderPrefix: "Bearer ",
	})
	if err != nil {
		panic(err) // a known message always marshals
	}
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{
		TargetUri:  address,
		StatPrefix: "fleetmesh_xds",
		// The factory that knows the plugin below (the default one
		// ignores plugins).
		CredentialsFactoryName: fileBasedMetadata,
		ChannelCredentials: &corev3.GrpcService_GoogleGrpc_ChannelCredentials{
			CredentialSpecifier: &corev3.GrpcService_GoogleGrpc_ChannelCredentials_SslCredentials{
				SslCredentials: &corev3.GrpcService_GoogleGrpc_SslCredentials{RootCerts: file(RootsFile)},
			},
		},
		CallCredentials: []*corev3.GrpcService_GoogleGrpc_CallCredentials{{
			CredentialSpecifier: &corev3.GrpcService_GoogleGrpc_CallCredentials_FromPlugin{
				FromPlugin: &corev3.GrpcService_GoogleGrpc_CallCredentials_MetadataCredentialsFromPlugin{
					Name:       fileBasedMetadata,
					ConfigType: &corev3.GrpcService_GoogleGrpc_CallCredentials_MetadataCredentialsFromPlugin_TypedConfig{TypedConfig: metadata},
				},
			},
		}},
		ChannelArgs: &corev3.GrpcService_GoogleGrpc_ChannelArgs{Args: map[string]*corev3.GrpcService_GoogleGrpc_ChannelArgs_Value{
			"grpc.ssl_target_name_override": {ValueSpecifier: &corev3.GrpcService_GoogleGrpc_ChannelArgs_Value_StringValue{StringValue: serverName}},
		}},
	}}}
}
