package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kubeadmCorefile is kubeadm's stock Corefile.
const kubeadmCorefile = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
`

func TestClustersetCorefile(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, err string
	}{{
		name: "kubeadm's Corefile gets the zone and the multicluster line, indented as its block",
		in:   kubeadmCorefile,
		want: strings.Replace(strings.Replace(kubeadmCorefile,
			"kubernetes cluster.local in-addr.arpa", "kubernetes cluster.local clusterset.local in-addr.arpa", 1),
			"{\n       pods insecure", "{\n       multicluster clusterset.local\n       pods insecure", 1),
	}, {
		name: "a plugin without a block gets one",
		in:   ".:53 {\n\tkubernetes cluster.local\n\tcache\n}\n",
		want: ".:53 {\n\tkubernetes cluster.local clusterset.local {\n\t    multicluster clusterset.local\n\t}\n\tcache\n}\n",
	}, {
		name: "a multicluster line for another zone gets this one too",
		in:   "kubernetes cluster.local clusterset.local {\n  multicluster other.local\n}\n",
		want: "kubernetes cluster.local clusterset.local {\n  multicluster other.local clusterset.local\n}\n",
	}, {
		name: "a Corefile without the kubernetes plugin is refused, unchanged",
		in:   ".:53 {\n  forward . 10.0.0.1\n}\n",
		err:  "the Corefile has no kubernetes plugin serving cluster.local",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ClustersetCorefile(tc.in, ClustersetZone)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Corefile (-want +got):\n%s", diff)
			}
			again, err := ClustersetCorefile(got, ClustersetZone)
			if err != nil || again != got {
				t.Errorf("a second run changed it: %v\n%s", err, cmp.Diff(got, again))
			}
		})
	}
}
