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
	// names are the explicitly subscribed names; sentWildcard the
	// wildcard subscription when the last response was sent, and
	// touched the names subscribed or unsubscribed since, each with
	// whether it was subscribed then: the subscription of that moment is
	// names with touched undone, kept without a copy of the whole set.
	names        *nameSet
	touched      map[string]bool
	sentWildcard bool
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
	// (The callback refused a type the server does not serve, or none.)
	typeURL := req.GetTypeUrl()
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
	var add, remove []string
	touch := func(n string) {
		if _, ok := t.touched[n]; !ok && t.sent != nil {
			if t.touched == nil {
				t.touched = map[string]bool{}
			}
			t.touched[n] = t.names.has(n)
		}
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		if n == "*" {
			t.wildcard = true
			continue
		}
		touch(n)
		add = append(add, n)
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if n == "*" {
			t.wildcard = false
			continue
		}
		touch(n)
		remove = append(remove, n)
	}
	if len(add)+len(remove) > 0 {
		// Most requests are acknowledgements that change nothing; a
		// change costs what it changes, not the whole subscription.
		t.names = d.names.edit(t.names, add, remove)
		if err := checkNames(typeURL, len(t.names.all())); err != nil {
			return err
		}
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
		t.sent, t.initial, t.answer, t.inflight, t.sentWildcard, t.touched = current[i], nil, false, true, t.wildcard, nil
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
	// sentHas says whether the name was subscribed to when the last
	// response was sent.
	sentHas := func(name string) bool {
		if was, ok := t.touched[name]; ok {
			return was
		}
		return t.names.has(name)
	}
	check := func(name string) {
		e, exists := now.get(name)
		// A name newly subscribed to was not sent as a subscription,
		// whatever the layers held then.
		held := t.sentWildcard || sentHas(name)
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
	case !t.wildcard:
		for name, was := range t.touched {
			if !was && !seen[name] && t.names.has(name) {
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

// edit returns s with names added and removed (nil for none left): s
// itself, changed in place, when its caller is its only user, else a set
// of its own. Either way the cost is that of the change, but for one
// copy when a set shared with other streams first changes. An edited set
// that comes to equal another is shared again.
func (n *nameSets) edit(s *nameSet, add, remove []string) *nameSet {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s != nil && s.refs > 1 {
		s.refs--
		s = &nameSet{names: maps.Clone(s.names), hash: s.hash}
	} else if s != nil {
		n.unhook(s)
	} else {
		s = &nameSet{names: map[string]struct{}{}}
	}
	for _, name := range add {
		if _, ok := s.names[name]; !ok {
			s.names[name] = struct{}{}
			s.hash += maphash.String(n.seed, name)
		}
	}
	for _, name := range remove {
		if _, ok := s.names[name]; ok {
			delete(s.names, name)
			s.hash -= maphash.String(n.seed, name)
		}
	}
	if len(s.names) == 0 {
		return nil
	}
	for _, o := range n.sets[s.hash] {
		if maps.Equal(o.names, s.names) {
			o.refs++
			return o
		}
	}
	s.refs = 1
	n.sets[s.hash] = append(n.sets[s.hash], s)
	return s
}

// unhook takes s out of the index (n.mu held).
func (n *nameSets) unhook(s *nameSet) {
	sets := slices.DeleteFunc(n.sets[s.hash], func(o *nameSet) bool { return o == s })
	if len(sets) == 0 {
		delete(n.sets, s.hash)
	} else {
		n.sets[s.hash] = sets
	}
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
	n.unhook(s)
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
