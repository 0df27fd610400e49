// Command mailsec-external-dns is a test harness, not the external-dns binary.
//
// It runs external-dns v0.23.0's own plan (sigs.k8s.io/external-dns/plan), TXT ownership
// registry (registry/txt) and rfc2136 / pdns providers (provider/rfc2136, provider/pdns),
// driven by a loop that mirrors external-dns's controller.RunOnce (registry Records, source
// endpoints, registry AdjustEndpoints, plan.Calculate with the same Plan fields, registry
// ApplyChanges). The desired endpoints come from a DNSEndpoint source of ours (source.go) that
// does what external-dns's source/crd.go does: list externaldns.k8s.io/v1alpha1 DNSEndpoints,
// check their targets, label each endpoint with its owning resource and record
// status.observedGeneration.
//
// Why not the real binary: external-dns's `source` package (which holds the CRD source) and so
// its main package cannot be built from the Go module proxy here, because three modules they
// need are not served by it: github.com/civo/civogo, github.com/exoscale/egoscale/v3 and the
// pinned pseudo-version of github.com/openshift/api that `source` uses. The packages used here
// do not depend on them.
//
// Flags carry external-dns's names; defaults differ where noted (--interval 2s,
// --managed-record-types TXT,A,AAAA,CNAME, --policy sync).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	log "github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"sigs.k8s.io/external-dns/endpoint"
	"sigs.k8s.io/external-dns/pkg/apis/externaldns"
	"sigs.k8s.io/external-dns/plan"
	"sigs.k8s.io/external-dns/provider"
	"sigs.k8s.io/external-dns/provider/pdns"
	"sigs.k8s.io/external-dns/provider/rfc2136"
	"sigs.k8s.io/external-dns/registry"
	"sigs.k8s.io/external-dns/registry/txt"
)

// stringList is a repeatable flag; a value may also hold a comma-separated list.
type stringList struct {
	values []string
	set    bool
}

func (s *stringList) String() string { return strings.Join(s.values, ",") }

func (s *stringList) Set(v string) error {
	if !s.set { // the first explicit value replaces the default
		s.values, s.set = nil, true
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			s.values = append(s.values, part)
		}
	}
	return nil
}

type options struct {
	kubeconfig   string
	namespace    string
	providerName string
	policy       string
	interval     time.Duration
	once         bool
	logLevel     string
	domainFilter stringList
	managedTypes stringList
	cfg          *externaldns.Config
}

func parseFlags(args []string) (*options, error) {
	o := &options{cfg: externaldns.NewConfig()}
	cfg := o.cfg
	fs := flag.NewFlagSet("mailsec-external-dns", flag.ContinueOnError)

	var rfcHosts, rfcZones stringList
	var tsigAXFR bool
	o.managedTypes.values = []string{endpoint.RecordTypeTXT, endpoint.RecordTypeA, endpoint.RecordTypeAAAA, endpoint.RecordTypeCNAME}

	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
	fs.StringVar(&o.namespace, "namespace", "", "namespace to read DNSEndpoints from (default: all namespaces)")
	fs.StringVar(&o.providerName, "provider", "", "DNS provider: rfc2136 or pdns (required)")
	fs.StringVar(&o.policy, "policy", "sync", "sync, upsert-only or create-only")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "interval between two synchronizations")
	fs.BoolVar(&o.once, "once", false, "run one synchronization and exit (non-zero on error)")
	fs.StringVar(&o.logLevel, "log-level", "info", "panic, fatal, error, warning, info, debug or trace")
	fs.Var(&o.domainFilter, "domain-filter", "limit target zones by domain suffix (repeatable)")
	fs.Var(&o.managedTypes, "managed-record-types", "record types to manage (repeatable; default TXT,A,AAAA,CNAME)")
	fs.StringVar(&cfg.TXTOwnerID, "txt-owner-id", "default", "owner id written to the TXT registry records")
	fs.StringVar(&cfg.TXTPrefix, "txt-prefix", "", "prefix of the TXT registry record names")

	fs.Var(&rfcHosts, "rfc2136-host", "RFC2136: DNS server host (repeatable)")
	fs.IntVar(&cfg.RFC2136Port, "rfc2136-port", 0, "RFC2136: DNS server port")
	fs.Var(&rfcZones, "rfc2136-zone", "RFC2136: zone (repeatable)")
	fs.BoolVar(&cfg.RFC2136Insecure, "rfc2136-insecure", false, "RFC2136: send no TSIG")
	fs.StringVar(&cfg.RFC2136TSIGKeyName, "rfc2136-tsig-keyname", "", "RFC2136: TSIG key name")
	fs.StringVar(&cfg.RFC2136TSIGSecret, "rfc2136-tsig-secret", "", "RFC2136: TSIG secret (base64)")
	fs.StringVar(&cfg.RFC2136TSIGSecretAlg, "rfc2136-tsig-secret-alg", "", "RFC2136: TSIG algorithm, e.g. hmac-sha256")
	fs.BoolVar(&cfg.RFC2136AXFR, "rfc2136-axfr", false, "RFC2136: list records by AXFR (without it nothing is ever updated or deleted)")
	fs.BoolVar(&tsigAXFR, "rfc2136-tsig-axfr", false, "RFC2136: deprecated external-dns spelling of --rfc2136-axfr")
	fs.DurationVar(&cfg.RFC2136MinTTL, "rfc2136-min-ttl", 0, "RFC2136: minimal TTL")
	fs.IntVar(&cfg.RFC2136BatchChangeSize, "rfc2136-batch-change-size", 50, "RFC2136: changes per UPDATE message")

	fs.StringVar(&cfg.PDNSServer, "pdns-server", "http://localhost:8081", "PowerDNS: API URL")
	fs.StringVar(&cfg.PDNSServerID, "pdns-server-id", "localhost", "PowerDNS: server id")
	fs.StringVar(&cfg.PDNSAPIKey, "pdns-api-key", "", "PowerDNS: API key")

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if _, ok := plan.Policies[o.policy]; !ok {
		return nil, fmt.Errorf("unknown policy: %s", o.policy)
	}

	// The parts of external-dns's Config the providers and the TXT registry read.
	cfg.Provider = o.providerName
	cfg.Policy = o.policy
	cfg.Registry = externaldns.RegistryTXT
	cfg.Namespace = o.namespace
	cfg.KubeConfig = o.kubeconfig
	cfg.Interval = o.interval
	cfg.Once = o.once
	cfg.LogLevel = o.logLevel
	cfg.DomainFilter = o.domainFilter.values
	cfg.ManagedDNSRecordTypes = o.managedTypes.values
	cfg.RFC2136Host = rfcHosts.values
	if len(cfg.RFC2136Host) == 0 {
		cfg.RFC2136Host = []string{""}
	}
	cfg.RFC2136Zone = rfcZones.values
	cfg.RFC2136TAXFR = tsigAXFR
	if tsigAXFR { // as external-dns's resolveDeprecatedFlags does
		log.Warn("--rfc2136-tsig-axfr is deprecated, use --rfc2136-axfr instead")
		cfg.RFC2136AXFR = true
	}
	cfg.RFC2136LoadBalancingStrategy = "disabled"
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mailsec-external-dns:", err)
		os.Exit(2)
	}
	level, err := log.ParseLevel(o.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailsec-external-dns:", err)
		os.Exit(2)
	}
	log.SetOutput(os.Stderr)
	log.SetLevel(level)
	if level < log.DebugLevel {
		klog.SetLogger(logr.Discard())
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	if err := run(ctx, o); err != nil {
		log.Error(err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	restConfig, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	src := &dnsEndpointSource{client: dyn, namespace: o.namespace}

	// As controller/execute.go builds it from --domain-filter.
	domainFilter := endpoint.NewDomainFilterWithOptions(endpoint.WithDomainFilter(o.cfg.DomainFilter))

	var p provider.Provider
	switch o.providerName {
	case externaldns.ProviderRFC2136:
		p, err = rfc2136.New(ctx, o.cfg, domainFilter)
	case externaldns.ProviderPDNS:
		p, err = pdns.New(ctx, o.cfg, domainFilter)
	default:
		return fmt.Errorf("--provider must be %s or %s, not %q", externaldns.ProviderRFC2136, externaldns.ProviderPDNS, o.providerName)
	}
	if err != nil {
		return fmt.Errorf("provider %s: %w", o.providerName, err)
	}
	reg, err := txt.New(o.cfg, &loggingProvider{Provider: p})
	if err != nil {
		return fmt.Errorf("txt registry: %w", err)
	}

	c := &loop{
		source:             src,
		registry:           reg,
		policy:             plan.Policies[o.policy],
		domainFilter:       domainFilter,
		managedRecordTypes: o.cfg.ManagedDNSRecordTypes,
	}
	if o.once {
		return c.runOnce(ctx)
	}
	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	for {
		if err := c.runOnce(ctx); err != nil {
			log.Errorf("Failed to do run once: %v", err)
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			log.Info("Terminating main controller loop")
			return nil
		}
	}
}

// loop holds what external-dns's controller.Controller holds for RunOnce.
type loop struct {
	source             *dnsEndpointSource
	registry           registry.Registry
	policy             plan.Policy
	domainFilter       endpoint.DomainFilterInterface
	managedRecordTypes []string
	excludeRecordTypes []string
	txtOwnerOld        string
}

// runOnce follows controller.RunOnce step by step (metrics and events left out).
func (c *loop) runOnce(ctx context.Context) error {
	regRecords, err := c.registry.Records(ctx)
	if err != nil {
		return fmt.Errorf("registry records: %w", err)
	}
	ctx = context.WithValue(ctx, provider.RecordsContextKey, regRecords)

	sourceEndpoints, err := c.source.Endpoints(ctx)
	if err != nil {
		return fmt.Errorf("source endpoints: %w", err)
	}

	endpoints, err := c.registry.AdjustEndpoints(sourceEndpoints)
	if err != nil {
		return fmt.Errorf("adjusting endpoints: %w", err)
	}
	registryFilter := c.registry.GetDomainFilter()

	p := &plan.Plan{
		Policies:       []plan.Policy{c.policy},
		Current:        regRecords,
		Desired:        endpoints,
		DomainFilter:   endpoint.MatchAllDomainFilters{c.domainFilter, registryFilter},
		ManagedRecords: c.managedRecordTypes,
		ExcludeRecords: c.excludeRecordTypes,
		OwnerID:        c.registry.OwnerID(),
		OldOwnerID:     c.txtOwnerOld,
	}
	p = p.Calculate()

	// plan.Calculate leaves names whose current records another owner (or nobody) holds
	// alone, logging that at debug level only; say so plainly.
	owner := c.registry.OwnerID()
	for _, want := range endpoints {
		for _, cur := range regRecords {
			if cur.DNSName == want.DNSName && cur.SetIdentifier == want.SetIdentifier &&
				plan.IsManagedRecord(cur.RecordType, c.managedRecordTypes, c.excludeRecordTypes) &&
				!cur.IsOwnedBy(owner) {
				log.Warnf("skipped %s %s %q: the existing %s %q is not owned by %q (owner %q)",
					want.DNSName, want.RecordType, []string(want.Targets), cur.RecordType, []string(cur.Targets),
					owner, cur.Labels[endpoint.OwnerLabelKey])
			}
		}
	}

	if !p.Changes.HasChanges() {
		log.Info("All records are already up to date")
		return nil
	}
	return c.registry.ApplyChanges(ctx, p.Changes)
}

// loggingProvider logs each change the registry hands to the provider once the provider has
// applied it, ownership TXT records included.
type loggingProvider struct {
	provider.Provider
}

func (l *loggingProvider) ApplyChanges(ctx context.Context, changes *plan.Changes) error {
	if err := l.Provider.ApplyChanges(ctx, changes); err != nil {
		return err
	}
	for _, ep := range changes.Create {
		log.Infof("applied create %s %s %q", ep.DNSName, ep.RecordType, []string(ep.Targets))
	}
	for i, ep := range changes.UpdateNew {
		old := []string(nil)
		if i < len(changes.UpdateOld) {
			old = changes.UpdateOld[i].Targets
		}
		log.Infof("applied update %s %s %q -> %q", ep.DNSName, ep.RecordType, old, []string(ep.Targets))
	}
	for _, ep := range changes.Delete {
		log.Infof("applied delete %s %s %q", ep.DNSName, ep.RecordType, []string(ep.Targets))
	}
	return nil
}
