package xds

import (
	"cmp"
	"errors"
	"hash/maphash"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// deltaServer serves delta ADS streams from the Cache. A stream keeps, per
// type, what it was last sent as the layers' maps of that moment (a
// pointer per layer, shared by every stream sent the same state) and its
// subscribed names as a set interned across streams (the sidecars of a
// namespace subscribe to the same thousand assignments): a sidecar costs
// the server a few hundred bytes of xDS state, not a name→version map per
// type. What changed since then is read off the layers: the names that
// differ between two states of a layer are computed once for all the
// streams that move between them.
type deltaServer struct {
	cache     *Cache
	callbacks serverv3.Callbacks
	names     *nameSets
	ids       atomic.Int64
}

func newDeltaServer(c *Cache, cb serverv3.Callbacks) *deltaServer {
	return &deltaServer{cache: c, callbacks: cb, names: newNameSets()}
}

// deltaStream is one delta ADS stream.
type deltaStream struct {
	id     int64
	str    discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	node   *corev3.Node
	layers []string
	types  map[string]*deltaType
	// order is the types in push order (pushOrder, then by name).
	order []string
	nonce int64
	// wake is signalled when a layer of the stream changes (or the cache
	// starts serving).
	wake chan struct{}
}

// deltaType is a stream's state of one type.
type deltaType struct {
	wildcard bool
	// names are the explicitly subscribed names; sentNames and
	// sentWildcard the subscription when the last response was sent.
	names, sentNames *nameSet
	sentWildcard     bool
	// sent is the stream's view of this type as of the last response
	// (the layers' maps then); nil before the first.
	sent view
	// initial are the versions the client said it holds when the stream
	// opened, until the first response.
	initial map[string]string
	// inflight: a response was sent that the client has not answered.
	inflight bool
	// answer: the client asked (a request without a nonce) and is
	// answered even if nothing changed.
	answer bool
}

// serve runs one stream until it ends.
func (d *deltaServer) serve(str discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx := str.Context()
	s := &deltaStream{id: d.ids.Add(1), str: str, node: &corev3.Node{}, types: map[string]*deltaType{}, wake: make(chan struct{}, 1)}
	defer func() {
		d.cache.unregister(s)
		for _, t := range s.types {
			d.names.release(t.names)
			d.names.release(t.sentNames)
		}
		d.callbacks.OnDeltaStreamClosed(s.id, s.node)
	}()
	if err := d.callbacks.OnDeltaStreamOpen(ctx, s.id, resource.AnyType); err != nil {
		return err
	}
	reqs := make(chan *discoveryv3.DeltaDiscoveryRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := str.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case req := <-reqs:
			if err := d.request(s, req); err != nil {
				return err
			}
		case <-s.wake:
		}
		if err := d.flush(s); err != nil {
			return err
		}
	}
}

// request takes in a client's request: its node on first sight, an
// acknowledgement, changes to its subscriptions.
func (d *deltaServer) request(s *deltaStream, req *discoveryv3.DeltaDiscoveryRequest) error {
	if err := d.callbacks.OnStreamDeltaRequest(s.id, req); err != nil {
		return err
	}
	if req.GetNode() != nil {
		s.node = req.GetNode()
	}
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		return status.Errorf(codes.InvalidArgument, "type URL is required for ADS")
	}
	if s.layers == nil {
		layers, err := d.cache.views(s.node)
		if err != nil {
			return err
		}
		s.layers = layers
		d.cache.register(s)
	}
	t := s.types[typeURL]
	if t == nil {
		// A first request without names subscribes to everything (the
		// legacy wildcard), and stays so until "*" is unsubscribed.
		t = &deltaType{wildcard: len(req.GetResourceNamesSubscribe()) == 0, initial: req.GetInitialResourceVersions()}
		s.types[typeURL] = t
		s.order = append(s.order, typeURL)
		slices.SortFunc(s.order, byPushOrder)
	}
	// The names change in a copy of the shared set, made on the first
	// change: most requests are acknowledgements that change none.
	var names map[string]struct{}
	edit := func() {
		if names == nil {
			names = maps.Clone(t.names.all())
			if names == nil {
				names = map[string]struct{}{}
			}
		}
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		switch {
		case n == "*":
			t.wildcard = true
		case !t.names.has(n) || names != nil:
			edit()
			names[n] = struct{}{}
		}
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		switch {
		case n == "*":
			t.wildcard = false
		case t.names.has(n) || names != nil:
			edit()
			delete(names, n)
		}
	}
	if names != nil {
		old := t.names
		t.names = d.names.intern(names)
		d.names.release(old)
	}
	// Any request of the type answers the last response (ACK or NACK:
	// the tracker records which) and opens the way for the next.
	t.inflight = false
	if req.GetResponseNonce() == "" {
		t.answer = true
	}
	return nil
}

// flush sends, type by type in push order, what changed for the stream
// since its last response of the type, unless that response is still
// unanswered.
func (d *deltaServer) flush(s *deltaStream) error {
	if s.layers == nil {
		return nil
	}
	current, version, serving := d.cache.layerMaps(s.layers, s.order)
	if !serving {
		return nil
	}
	for i, typeURL := range s.order {
		t := s.types[typeURL]
		if t.inflight {
			continue
		}
		changed, removed := d.diff(t, current[i])
		if len(changed) == 0 && len(removed) == 0 && !t.answer {
			t.sent = current[i]
			continue
		}
		s.nonce++
		resp := &discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: strconv.FormatInt(version, 10),
			TypeUrl:           typeURL,
			Nonce:             strconv.FormatInt(s.nonce, 10),
			RemovedResources:  removed,
			Resources:         make([]*discoveryv3.Resource, len(changed)),
		}
		for i, e := range changed {
			resp.Resources[i] = &discoveryv3.Resource{Name: e.Name, Version: e.Version, Resource: e.any}
		}
		d.callbacks.OnStreamDeltaResponse(s.id, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL}, resp)
		if err := s.str.Send(resp); err != nil {
			return err
		}
		t.sent, t.initial, t.answer, t.inflight, t.sentWildcard = current[i], nil, false, true, t.wildcard
		if t.sentNames != t.names {
			d.names.release(t.sentNames)
			t.sentNames = d.names.acquire(t.names)
		}
	}
	return nil
}

// byPushOrder orders type URLs as pushOrder does, the types it does not
// name after, by name.
func byPushOrder(a, b string) int {
	oa, ka := pushOrder[a]
	ob, kb := pushOrder[b]
	if ka != kb {
		if ka {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(oa, ob), cmp.Compare(a, b))
}

// diff is what the stream must be sent of one type to hold cur: the
// entries new or changed since its last response, sorted by name, and
// the names gone (of those it holds and still subscribes to).
func (d *deltaServer) diff(t *deltaType, now view) (changed []*Entry, removed []string) {
	wants := func(name string) bool { return t.wildcard || t.names.has(name) }
	if t.sent == nil {
		// The first response: every entry subscribed to, and whatever
		// the client held from before that is gone.
		if t.wildcard {
			now.each(func(_ string, e *Entry) { changed = append(changed, e) })
		} else {
			for name := range t.names.all() {
				if e, ok := now.get(name); ok {
					changed = append(changed, e)
				}
			}
		}
		for name := range t.initial {
			if _, ok := now.get(name); !ok || !wants(name) {
				removed = append(removed, name)
			}
		}
		return sortEntries(changed), sorted(removed)
	}
	before := t.sent
	check := func(name string) {
		e, exists := now.get(name)
		// A name newly subscribed to was not sent as a subscription,
		// whatever the layers held then.
		held := t.sentWildcard || t.sentNames.has(name)
		var old *Entry
		if held {
			old, held = before.get(name)
		}
		switch {
		case exists && (!held || old.Version != e.Version):
			changed = append(changed, e)
		case !exists && held:
			removed = append(removed, name)
		}
	}
	seen := map[string]bool{}
	for i := range now {
		for _, name := range d.cache.layerDiff(t.sent[i], now[i]) {
			if !seen[name] && wants(name) {
				seen[name] = true
				check(name)
			}
		}
	}
	switch {
	case t.wildcard && !t.sentWildcard:
		// Newly subscribed to everything: whatever was not held is sent.
		now.each(func(name string, _ *Entry) {
			if !seen[name] {
				seen[name] = true
				check(name)
			}
		})
	case t.names != t.sentNames && !t.wildcard:
		for name := range t.names.all() {
			if !seen[name] && !t.sentNames.has(name) {
				seen[name] = true
				check(name)
			}
		}
	}
	return sortEntries(changed), sorted(removed)
}

func sortEntries(es []*Entry) []*Entry {
	slices.SortFunc(es, func(a, b *Entry) int { return cmp.Compare(a.Name, b.Name) })
	return es
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// nameSet is a set of resource names shared by every stream that
// subscribes to exactly those names. It is immutable.
type nameSet struct {
	names map[string]struct{}
	hash  uint64
	refs  int
}

func (n *nameSet) has(name string) bool {
	if n == nil {
		return false
	}
	_, ok := n.names[name]
	return ok
}

func (n *nameSet) all() map[string]struct{} {
	if n == nil {
		return nil
	}
	return n.names
}

// nameSets interns name sets: a set is kept once, however many streams
// subscribe to it, and dropped with its last.
type nameSets struct {
	seed maphash.Seed
	mu   sync.Mutex
	sets map[uint64][]*nameSet
}

func newNameSets() *nameSets {
	return &nameSets{seed: maphash.MakeSeed(), sets: map[uint64][]*nameSet{}}
}

// intern returns the shared set of these names (nil for none), counted
// as used once more. names is the caller's no longer.
func (n *nameSets) intern(names map[string]struct{}) *nameSet {
	if len(names) == 0 {
		return nil
	}
	var h uint64
	for name := range names {
		h += maphash.String(n.seed, name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.sets[h] {
		if maps.Equal(s.names, names) {
			s.refs++
			return s
		}
	}
	s := &nameSet{names: names, hash: h, refs: 1}
	n.sets[h] = append(n.sets[h], s)
	return s
}

// acquire counts s as used once more.
func (n *nameSets) acquire(s *nameSet) *nameSet {
	if s != nil {
		n.mu.Lock()
		s.refs++
		n.mu.Unlock()
	}
	return s
}

// release counts s as used once less, and forgets it with its last use.
func (n *nameSets) release(s *nameSet) {
	if s == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.refs--; s.refs > 0 {
		return
	}
	sets := slices.DeleteFunc(n.sets[s.hash], func(o *nameSet) bool { return o == s })
	if len(sets) == 0 {
		delete(n.sets, s.hash)
	} else {
		n.sets[s.hash] = sets
	}
}

// adsServer is the ADS service: state of the world by go-control-plane's
// server, delta by fleetmesh's own.
type adsServer struct {
	sotw  serverv3.Server
	delta *deltaServer
}

func (a adsServer) StreamAggregatedResources(str discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamAggregatedResources(str)
}

func (a adsServer) DeltaAggregatedResources(str discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.serve(str)
}

var _ discoveryv3.AggregatedDiscoveryServiceServer = adsServer{}
