package xds

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Entry is one resource as it is served: marshalled once, whatever number
// of proxies receive it, and versioned by its content, so a proxy is sent
// exactly the resources that changed.
// Only the marshalled form is kept: the shared layers' entries are few,
// but every proxy has an own layer.
type Entry struct {
	Name    string
	Version string
	any     *anypb.Any
}

// NewEntry marshals a resource deterministically and versions it by a hash
// of its bytes.
func NewEntry(name string, m proto.Message) (*Entry, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", name, err)
	}
	sum := sha256.Sum256(data)
	return &Entry{
		Name:    name,
		Version: base64.RawURLEncoding.EncodeToString(sum[:12]),
		any:     &anypb.Any{TypeUrl: resource.APITypePrefix + string(m.ProtoReflect().Descriptor().FullName()), Value: data},
	}, nil
}

// Resources are the entries of one layer, by type URL and name. They are
// immutable once handed to the cache.
type Resources map[string]map[string]*Entry

// Cache serves each proxy its view: the union of the layers named for it
// (for example the cluster-wide outbound clusters and endpoints, plus the
// proxy's own listeners). Layers are shared: a resource of a layer is
// marshalled once for all the proxies whose view includes it. It answers
// go-control-plane's state-of-the-world server and fleetmesh's delta
// server (deltaServer), partial subscriptions (proxyless gRPC clients ask
// for names) too, and a client is sent only what changed since what it
// was last sent.
type Cache struct {
	// views resolves a node to the names of its layers, once per stream;
	// an error refuses the node.
	views func(node *corev3.Node) ([]string, error)

	mu      sync.Mutex
	layers  map[string]Resources
	watches map[*cacheWatch]struct{}
	// streams are the delta streams, woken when one of their layers
	// changes.
	streams map[*deltaStream]struct{}
	version int64

	// diffs are the names that differ between two states of a layer's
	// type (layerDiff), by the two maps, since the last update.
	diffMu sync.Mutex
	diffs  map[[2]unsafe.Pointer][]string
	// serving is false until the first complete mesh is in the layers
	// (Serve): until then watches wait, so a proxy that reconnects to a
	// starting replica is not told that everything it holds is gone.
	serving bool
}

type cacheWatch struct {
	typeURL string
	layers  []string
	sub     cachev3.Subscription
	sotw    *discoveryv3.DiscoveryRequest
	sotwCh  chan cachev3.Response
	first   bool
}

// NewCache returns an empty cache whose views are resolved by views.
func NewCache(views func(node *corev3.Node) ([]string, error)) *Cache {
	return &Cache{views: views, layers: map[string]Resources{}, watches: map[*cacheWatch]struct{}{}, streams: map[*deltaStream]struct{}{}}
}

// SetLayer replaces a layer and answers every watch whose view it changes.
// Types absent from res are left as they were; an empty map for a type
// empties it.
func (c *Cache) SetLayer(name string, res Resources) {
	c.SetLayers(map[string]Resources{name: res})
}

// SetLayers replaces layers at once, as SetLayer does each: no watch sees
// one of them changed and not the others (a resource that moves from one
// layer to one that hides it is never answered from the first alone).
func (c *Cache) SetLayers(set map[string]Resources) {
	c.update(func() map[string][]string {
		changed := map[string][]string{}
		for name, res := range set {
			layer := c.layers[name]
			if layer == nil {
				layer = Resources{}
				c.layers[name] = layer
			}
			for typeURL, entries := range res {
				if !sameEntries(layer[typeURL], entries) {
					layer[typeURL] = entries
					changed[name] = append(changed[name], typeURL)
				}
			}
		}
		return changed
	})
}

// DeleteLayer removes a layer, e.g. the own layer of a proxy that left.
func (c *Cache) DeleteLayer(name string) {
	c.update(func() map[string][]string {
		layer, ok := c.layers[name]
		if !ok {
			return nil
		}
		delete(c.layers, name)
		return map[string][]string{name: slices.Collect(maps.Keys(layer))}
	})
}

// pushOrder is the order in which a change is pushed across types, as the
// xDS protocol advises (make before break): clusters, then their
// endpoints, then the listeners and routes that refer to them.
var pushOrder = map[string]int{
	resource.ClusterType: 0, resource.EndpointType: 1, resource.ListenerType: 2, resource.RouteType: 3,
}

// update applies a change (which returns the types it changed, by
// layer) and answers the watches whose views it changed.
func (c *Cache) update(apply func() (changed map[string][]string)) {
	var sends []pending
	c.mu.Lock()
	changed := apply()
	for name, types := range changed {
		if len(types) == 0 {
			delete(changed, name)
		}
	}
	if len(changed) > 0 {
		c.version++
	}
	touches := func(w *cacheWatch) bool {
		for _, l := range w.layers {
			if slices.Contains(changed[l], w.typeURL) {
				return true
			}
		}
		return false
	}
	if len(changed) > 0 {
		c.diffMu.Lock()
		c.diffs = nil
		c.diffMu.Unlock()
	}
	if len(changed) > 0 && c.serving {
		for s := range c.streams {
			if slices.ContainsFunc(s.layers, func(l string) bool { return len(changed[l]) > 0 }) {
				s.signal()
			}
		}
		for w := range c.watches {
			if touches(w) {
				if send := c.respond(w, false); send != nil {
					delete(c.watches, w)
					sends = append(sends, pending{pushOrder[w.typeURL], send})
				}
			}
		}
	}
	c.mu.Unlock()
	sendInOrder(sends)
}

// pending is a response ready to send, in the push order of its type.
type pending struct {
	order int
	send  func()
}

// sendInOrder sends responses clusters first, then endpoints, listeners
// and routes, so a proxy never holds a reference to what it lacks.
func sendInOrder(sends []pending) {
	slices.SortStableFunc(sends, func(a, b pending) int { return a.order - b.order })
	for _, p := range sends {
		p.send()
	}
}

// Serve starts answering watches, those waiting first: call it once the
// layers hold a complete mesh. Later calls do nothing.
func (c *Cache) Serve() {
	var sends []pending
	c.mu.Lock()
	if c.serving {
		c.mu.Unlock()
		return
	}
	c.serving = true
	for s := range c.streams {
		s.signal()
	}
	for w := range c.watches {
		if send := c.respond(w, w.first); send != nil {
			delete(c.watches, w)
			sends = append(sends, pending{pushOrder[w.typeURL], send})
		}
	}
	c.mu.Unlock()
	sendInOrder(sends)
}

func sameEntries(a, b map[string]*Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for name, e := range a {
		if o, ok := b[name]; !ok || o.Version != e.Version {
			return false
		}
	}
	return true
}

// View returns the entries of a type a node's view holds, as a copy.
func (c *Cache) View(layers []string, typeURL string) map[string]*Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*Entry{}
	c.view(layers, typeURL).each(func(name string, e *Entry) { out[name] = e })
	return out
}

// view is the union of the layers' entries of one type, without copying
// them: a proxy's view is read for every response, and its entries are
// mostly the shared layers' thousands.
// The view is positional, a map (nil if none) per layer, so a delta
// stream can compare it layer by layer with the one it was last sent.
func (c *Cache) view(layers []string, typeURL string) view {
	v := make(view, len(layers))
	for i, l := range layers {
		v[i] = c.layers[l][typeURL]
	}
	return v
}

// view is the entries of one type of some layers, in order: a name in a
// later layer hides the same name in an earlier one.
type view []map[string]*Entry

func (v view) get(name string) (*Entry, bool) {
	for i := len(v) - 1; i >= 0; i-- {
		if e, ok := v[i][name]; ok {
			return e, true
		}
	}
	return nil, false
}

// each calls f for every name of the view, once, with its entry.
func (v view) each(f func(name string, e *Entry)) {
	for i, entries := range v {
		for name, e := range entries {
			if _, hidden := v[i+1:].get(name); !hidden {
				f(name, e)
			}
		}
	}
}

// CreateWatch opens a state-of-the-world watch.
func (c *Cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	layers, err := c.views(req.GetNode())
	if err != nil {
		return nil, err
	}
	// The watch keeps only the request's type: a proxy's request can name
	// a thousand resources, and the subscription already holds them.
	w := &cacheWatch{typeURL: req.GetTypeUrl(), layers: layers, sub: sub, sotw: &discoveryv3.DiscoveryRequest{TypeUrl: req.GetTypeUrl()}, sotwCh: ch, first: req.GetResponseNonce() == ""}
	return c.open(w), nil
}

// CreateDeltaWatch is not how delta streams are served: deltaServer reads
// the layers itself. It is here for go-control-plane's ConfigWatcher,
// which its state-of-the-world server takes.
func (c *Cache) CreateDeltaWatch(*cachev3.DeltaRequest, cachev3.Subscription, chan cachev3.DeltaResponse) (func(), error) {
	return nil, errors.New("delta xDS is served by fleetmesh's delta server")
}

// register makes a delta stream hear of changes to its layers.
func (c *Cache) register(s *deltaStream) {
	c.mu.Lock()
	c.streams[s] = struct{}{}
	c.mu.Unlock()
}

func (c *Cache) unregister(s *deltaStream) {
	c.mu.Lock()
	delete(c.streams, s)
	c.mu.Unlock()
}

// signal wakes the stream, unless it is already to wake.
func (s *deltaStream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// layerMaps returns, for each type, the layers' maps of that type (nil
// for a layer without it), the cache's version and whether it serves
// yet: one consistent state for every type.
func (c *Cache) layerMaps(layers, types []string) ([]view, int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]view, len(types))
	for i, typeURL := range types {
		out[i] = c.view(layers, typeURL)
	}
	return out, c.version, c.serving
}

// layerDiff returns the names whose entries differ between two states of
// a layer's type (added, removed or changed). The maps are immutable, so
// the answer is computed once for all the streams that move from one to
// the other.
func (c *Cache) layerDiff(before, after map[string]*Entry) []string {
	if len(before) == 0 && len(after) == 0 {
		return nil
	}
	key := [2]unsafe.Pointer{mapPointer(before), mapPointer(after)}
	if key[0] == key[1] {
		return nil
	}
	c.diffMu.Lock()
	defer c.diffMu.Unlock()
	if names, ok := c.diffs[key]; ok {
		return names
	}
	var names []string
	for name, e := range after {
		if o, ok := before[name]; !ok || o.Version != e.Version {
			names = append(names, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			names = append(names, name)
		}
	}
	if c.diffs == nil {
		c.diffs = map[[2]unsafe.Pointer][]string{}
	}
	c.diffs[key] = names
	return names
}

// mapPointer is a map's identity (nil for a nil map).
func mapPointer(m map[string]*Entry) unsafe.Pointer {
	return reflect.ValueOf(m).UnsafePointer()
}

func (c *Cache) open(w *cacheWatch) func() {
	c.mu.Lock()
	var send func()
	if c.serving {
		send = c.respond(w, w.first)
	}
	if send == nil {
		c.watches[w] = struct{}{}
	}
	c.mu.Unlock()
	if send != nil {
		send()
	}
	return func() {
		c.mu.Lock()
		delete(c.watches, w)
		c.mu.Unlock()
	}
}

// Fetch is not served: proxies use streams.
func (c *Cache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, fmt.Errorf("fetch is not supported; use an ADS stream")
}

// fullState reports whether a type's sotw responses must carry every
// resource (LDS and CDS), as the protocol requires.
func fullState(typeURL string) bool {
	return typeURL == resource.ListenerType || typeURL == resource.ClusterType
}

// respond computes the watch's response, if it needs one, and returns the
// function that sends it (to run without the lock held). It mirrors
// go-control-plane's LinearCache over the union of the watch's layers.
func (c *Cache) respond(w *cacheWatch, evenIfEmpty bool) func() {
	view := c.view(w.layers, w.typeURL)
	known := w.sub.ReturnedResources()
	var changed, removed []string
	if w.sub.IsWildcard() {
		view.each(func(name string, e *Entry) {
			if v, ok := known[name]; !ok || v != e.Version {
				changed = append(changed, name)
			}
		})
		for name := range known {
			if _, ok := view.get(name); !ok {
				removed = append(removed, name)
			}
		}
	} else {
		subscribed := w.sub.SubscribedResources()
		for name := range subscribed {
			e, exists := view.get(name)
			v, isKnown := known[name]
			switch {
			case !exists && isKnown:
				removed = append(removed, name)
			case exists && (!isKnown || v != e.Version):
				changed = append(changed, name)
			}
		}
		for name := range known {
			if _, ok := subscribed[name]; !ok {
				removed = append(removed, name)
			}
		}
	}
	if len(changed) == 0 && len(removed) == 0 && !evenIfEmpty {
		return nil
	}

	toReturn := changed
	if fullState(w.typeURL) {
		toReturn = toReturn[:0:0]
		view.each(func(name string, _ *Entry) {
			if _, ok := w.sub.SubscribedResources()[name]; ok || w.sub.IsWildcard() {
				toReturn = append(toReturn, name)
			}
		})
	} else if len(changed) == 0 && !evenIfEmpty {
		// sotw cannot say that a resource of other types went away.
		return nil
	}
	slices.Sort(toReturn)
	slices.Sort(removed)

	returned := maps.Clone(known)
	if returned == nil {
		returned = map[string]string{}
	}
	entries := make([]*Entry, 0, len(toReturn))
	for _, name := range toReturn {
		e, _ := view.get(name)
		entries = append(entries, e)
		returned[name] = e.Version
	}
	for _, name := range removed {
		delete(returned, name)
	}
	version := strconv.FormatInt(c.version, 10)
	resp := &sotwResponse{req: w.sotw, version: version, entries: entries, returned: returned}
	// The channel is the stream's, buffered for every type it may watch
	// (go-control-plane sizes it so), and a stream watches only the types
	// the server serves, one watch each (checkRequest): the send never
	// waits on a client that does not read.
	return func() { w.sotwCh <- resp }
}

type sotwResponse struct {
	req      *discoveryv3.DiscoveryRequest
	version  string
	entries  []*Entry
	returned map[string]string
}

func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	out := &discoveryv3.DiscoveryResponse{VersionInfo: r.version, TypeUrl: r.req.GetTypeUrl(), Resources: make([]*anypb.Any, len(r.entries))}
	for i, e := range r.entries {
		out.Resources[i] = e.any
	}
	return out, nil
}
func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)               { return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string                { return r.version }
func (r *sotwResponse) GetReturnedResources() map[string]string   { return r.returned }
func (r *sotwResponse) GetContext() context.Context               { return context.Background() }
