package main

// The DNSEndpoint source: what external-dns's source/crd.go does, read with client-go's
// dynamic client instead of a controller-runtime cache (source/crd.go lives in the package
// that cannot be built here).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	log "github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	apiv1alpha1 "sigs.k8s.io/external-dns/apis/v1alpha1"
	"sigs.k8s.io/external-dns/endpoint"
	"sigs.k8s.io/external-dns/pkg/events"
	"sigs.k8s.io/external-dns/source/types"
)

var dnsEndpointResource = schema.GroupVersionResource{
	Group:    "externaldns.k8s.io",
	Version:  "v1alpha1",
	Resource: "dnsendpoints",
}

type dnsEndpointSource struct {
	client    dynamic.Interface
	namespace string // "" = all namespaces
}

// Endpoints lists the DNSEndpoints and returns their spec.endpoints, merged as
// endpoint.MergeEndpoints merges them for external-dns.
func (s *dnsEndpointSource) Endpoints(ctx context.Context) ([]*endpoint.Endpoint, error) {
	list, err := s.client.Resource(dnsEndpointResource).Namespace(s.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing dnsendpoints: %w", err)
	}

	var endpoints []*endpoint.Endpoint
	for i := range list.Items {
		item := &list.Items[i]
		// Decoded from JSON, as a typed client would: runtime.DefaultUnstructuredConverter
		// panics on endpoint.Endpoint's unexported field.
		var obj apiv1alpha1.DNSEndpoint
		if err := decode(item, &obj); err != nil {
			log.Warnf("Skipping DNSEndpoint %s/%s: %v", item.GetNamespace(), item.GetName(), err)
			continue
		}

		var own []*endpoint.Endpoint
		for _, ep := range obj.Spec.Endpoints {
			if ep == nil {
				log.Debugf("Skipping nil endpoint in DNSEndpoint %s/%s at spec.endpoints", obj.Namespace, obj.Name)
				continue
			}
			if !targetsLegal(&obj, ep) {
				continue
			}
			ep.WithLabel(endpoint.ResourceLabelKey, fmt.Sprintf("crd/%s/%s", obj.Namespace, obj.Name))
			own = append(own, ep)
		}
		endpoint.AttachRefObject(own, events.NewObjectReferenceFromParts(
			apiv1alpha1.DNSEndpointKind, dnsEndpointResource.GroupVersion().String(),
			obj.Namespace, obj.Name, obj.UID, types.CRD))
		endpoints = append(endpoints, own...)

		if obj.Status.ObservedGeneration == obj.Generation {
			continue
		}
		// As source/crd.go: record the generation seen, through the status subresource;
		// a failure is only a warning.
		if err := unstructured.SetNestedField(item.Object, obj.Generation, "status", "observedGeneration"); err == nil {
			_, err = s.client.Resource(dnsEndpointResource).Namespace(obj.Namespace).UpdateStatus(ctx, item, metav1.UpdateOptions{})
			if err != nil {
				log.Warnf("Could not update ObservedGeneration of [dnsendpoint/%s/%s]: %v", obj.Namespace, obj.Name, err)
			}
		}
	}
	return endpoint.MergeEndpoints(endpoints), nil
}

// targetsLegal applies source/crd.go's target checks: names for CNAME/DNAME (and other types
// needing a trailing dot) and TXT, MX and SRV values pass as given; NAPTR targets must end with
// a dot; any other type (A, AAAA, ...) must not. An endpoint with an illegal target is dropped
// with a warning.
func targetsLegal(obj *apiv1alpha1.DNSEndpoint, ep *endpoint.Endpoint) bool {
	for _, target := range ep.Targets {
		if endpoint.RequiresTrailingDot(ep.RecordType) {
			continue
		}
		switch ep.RecordType {
		case endpoint.RecordTypeTXT, endpoint.RecordTypeMX, endpoint.RecordTypeSRV:
			continue
		}
		hasDot := strings.HasSuffix(target, ".")
		illegal, fixed := hasDot, strings.TrimSuffix(target, ".")
		if ep.RecordType == endpoint.RecordTypeNAPTR {
			illegal, fixed = !hasDot, target+"."
		}
		if illegal {
			log.Warnf("Endpoint %s/%s with DNSName %s has an illegal target %q for %s record — use %q not %q.",
				obj.Namespace, obj.Name, ep.DNSName, target, ep.RecordType, fixed, target)
			return false
		}
	}
	return true
}

func decode(item *unstructured.Unstructured, obj *apiv1alpha1.DNSEndpoint) error {
	data, err := item.MarshalJSON()
	if err != nil {
		return err
	}
	return json.Unmarshal(data, obj)
}
