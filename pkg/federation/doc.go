// Package federation keeps the fleet's member clusters true to each other:
// for every ServiceExport in a member it writes, in every other member, the
// ServiceImport (one endpoint per exporting cluster), a derived Service
// where the importer has none, and, between members on the same network,
// the exporters' pod addresses as MCS EndpointSlices; it mirrors every
// Cluster (without credentials) into each member, and reports export
// conditions as the MCS API does.
//
// The work is split as everywhere in fleetmesh: Plan is a pure function
// from what is known of each member to what each member should hold;
// the reconciler gathers members' objects and applies the plan's
// difference. A member that cannot be reached contributes what it
// contributed last, and nothing it did not write is ever changed.
package federation
