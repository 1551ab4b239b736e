package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetmesh/fleetmesh/pkg/pki"
	"github.com/fleetmesh/fleetmesh/pkg/signer"
)

func newTrustCommand(k *kubeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Which of the fleet's workload CAs this member trusts, and approve those that wait",
		Long: `A member's workload signer publishes to its pods the other members' CAs it
accepted of those the federation brings: a member's first CAs when it is
first seen (--fleet-trust=first-use) or once approved here (pinned), and a
member's later CAs when a CA already trusted for it endorsed them. A CA
that is neither waits for this member's operator. Run these with the
member's own context.`,
	}
	cmd.AddCommand(newTrustListCommand(k), newTrustApproveCommand(k))
	return cmd
}

// TrustRow is one CA of the fleet as a member takes it.
type TrustRow struct {
	Member      string    `json:"member"`
	State       string    `json:"state"` // trusted or pending
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"notAfter"`
}

func newTrustListCommand(k *kubeFlags) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "list",
		Short: "The fleet's CAs this member trusts, and those that wait for approval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := k.clients()
			if err != nil {
				return err
			}
			cm, err := readFleetTrust(cmd.Context(), c.client)
			if err != nil {
				return err
			}
			rows := trustRows(cm)
			return out.print(cmd.OutOrStdout(), rows, func(w io.Writer) {
				row(w, "MEMBER", "STATE", "FINGERPRINT (SHA-256)", "SUBJECT", "NOT AFTER")
				for _, r := range rows {
					row(w, r.Member, r.State, r.Fingerprint, r.Subject, r.NotAfter.UTC().Format(time.RFC3339))
				}
			})
		},
	}
	out.bind(cmd)
	return cmd
}

func newTrustApproveCommand(k *kubeFlags) *cobra.Command {
	var fingerprints []string
	cmd := &cobra.Command{
		Use:   "approve MEMBER",
		Short: "Trust the CAs of MEMBER that wait for approval",
		Long: `Trust the CAs of MEMBER that wait for this member's approval (all of them, or
those --fingerprint names). Compare the fingerprints with what MEMBER itself
publishes first ('fleetmesh trust list' shows them here; in MEMBER:
kubectl -n fleetmesh-system get configmap fleetmesh-workload-roots): a CA
approved here vouches for any workload identity in this member.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := k.clients()
			if err != nil {
				return err
			}
			return approveFleetTrust(cmd.Context(), cmd.OutOrStdout(), c.client, args[0], fingerprints)
		},
	}
	cmd.Flags().StringSliceVar(&fingerprints, "fingerprint", nil, "approve only the CAs of these SHA-256 fingerprints (hex)")
	return cmd
}

func readFleetTrust(ctx context.Context, c client.Client) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, client.ObjectKey{Namespace: DefaultSystemNamespace, Name: signer.FleetTrustConfigMap}, cm)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("ConfigMap %s/%s does not exist: this cluster's signer has not taken the fleet's roots yet (is it a member, with --workload-signer?)", DefaultSystemNamespace, signer.FleetTrustConfigMap)
	}
	if err != nil {
		return nil, fmt.Errorf("read ConfigMap %s/%s: %w", DefaultSystemNamespace, signer.FleetTrustConfigMap, err)
	}
	return cm, nil
}

func trustRows(cm *corev1.ConfigMap) []TrustRow {
	var rows []TrustRow
	for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
		member, pending, ok := signer.ParseFleetTrustKey(key)
		if !ok {
			continue
		}
		state := "trusted"
		if pending {
			state = "pending"
		}
		for _, c := range pki.ParseCerts([]byte(cm.Data[key])) {
			rows = append(rows, TrustRow{Member: member, State: state, Fingerprint: pki.Fingerprint(c), Subject: c.Subject.String(), NotAfter: c.NotAfter})
		}
	}
	return rows
}

func approveFleetTrust(ctx context.Context, out io.Writer, c client.Client, member string, fingerprints []string) error {
	cm, err := readFleetTrust(ctx, c)
	if err != nil {
		return err
	}
	pending := pki.ParseCerts([]byte(cm.Data[signer.PendingKey(member)]))
	if len(pending) == 0 {
		return fmt.Errorf("no CA of %s waits for approval ('fleetmesh trust list' shows what this member trusts)", member)
	}
	var approve, keep []*x509.Certificate
	for _, p := range pending {
		if len(fingerprints) == 0 || slices.Contains(fingerprints, pki.Fingerprint(p)) {
			approve = append(approve, p)
		} else {
			keep = append(keep, p)
		}
	}
	if len(approve) == 0 {
		return fmt.Errorf("no CA of %s that waits has a --fingerprint given", member)
	}
	accepted := pki.ParseCerts([]byte(cm.Data[signer.AcceptedKey(member)]))
	for _, a := range approve {
		if !slices.ContainsFunc(accepted, a.Equal) {
			accepted = append(accepted, a)
		}
	}
	next := cm.DeepCopy()
	next.Data[signer.AcceptedKey(member)] = pki.PEMCerts(accepted)
	if len(keep) > 0 {
		next.Data[signer.PendingKey(member)] = pki.PEMCerts(keep)
	} else {
		delete(next.Data, signer.PendingKey(member))
	}
	if err := c.Update(ctx, next); err != nil {
		return fmt.Errorf("write ConfigMap %s/%s: %w", DefaultSystemNamespace, signer.FleetTrustConfigMap, err)
	}
	for _, a := range approve {
		if _, err := fmt.Fprintf(out, "trusted: %s CA %s (%s)\n", member, pki.Fingerprint(a), a.Subject); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintln(out, "the member's signer publishes it to its pods within 30 s")
	return err
}
