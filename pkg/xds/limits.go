package xds

import (
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What one stream may make the server hold is bounded by what the server
// serves, not by what a client asks: the type URLs are the four this
// server serves (every other type a client names would be a watch, a
// per-stream entry and a metrics series of its own), and the names a
// stream subscribes to, per type, are at most MaxSubscribedNames.

// servedTypes are the resource types the server serves.
var servedTypes = map[string]bool{
	resource.ClusterType: true, resource.EndpointType: true, resource.ListenerType: true, resource.RouteType: true,
}

// MaxSubscribedNames bounds the resource names one stream subscribes to,
// per type: a sidecar of a mesh of ten thousand service ports subscribes
// to as many assignments.
const MaxSubscribedNames = 1 << 16

// checkTypeURL refuses a type this server does not serve.
func checkTypeURL(typeURL string) error {
	if typeURL == "" {
		return status.Error(codes.InvalidArgument, "type URL is required for ADS")
	}
	if !servedTypes[typeURL] {
		return status.Errorf(codes.InvalidArgument, "type URL %.200q is not one this server serves (%s)", typeURL, servedTypeNames)
	}
	return nil
}

var servedTypeNames = strings.Join(slices.Sorted(maps.Keys(servedTypes)), ", ")

// checkNames refuses a subscription of more than MaxSubscribedNames names.
func checkNames(typeURL string, n int) error {
	if n > MaxSubscribedNames {
		return status.Errorf(codes.ResourceExhausted, "%d names of %s subscribed, more than the %d a stream may", n, shortType(typeURL), MaxSubscribedNames)
	}
	return nil
}

// checkRequest refuses a request of a type the server does not serve, or
// naming more than MaxSubscribedNames resources: the stream ends, saying
// why.
func checkRequest(typeURL string, names int) error {
	if err := checkTypeURL(typeURL); err != nil {
		return err
	}
	return checkNames(typeURL, names)
}
