// Command mailsec-kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the
// library Flux and `kubectl wait`-style tools use to judge health, makes of one object.
//
//	mailsec-kstatus < object.json
//	{"status":"InProgress","message":"...","conditions":[...]}
//
// stdin is one Kubernetes object as JSON (as the API server returns it); stdout is
// status.Compute's Result. Built by scripts/tools.d/kstatus.sh; tests/gitops_health.rs runs it
// on MailDomains read back from the API server.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mailsec-kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("stdin is not a Kubernetes object: %w", err)
	}
	res, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("kstatus: %w", err)
	}
	conditions := res.Conditions
	if conditions == nil {
		conditions = []status.Condition{}
	}
	return json.NewEncoder(out).Encode(result{
		Status:     res.Status.String(),
		Message:    res.Message,
		Conditions: conditions,
	})
}
