package registry

import (
	"os"
	"testing"
)

// The example registry that `make run` starts from must stay valid.
func TestExampleRegistryIsValid(t *testing.T) {
	data, err := os.ReadFile("../../deploy/clients.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clients, err := Parse(data)
	if err != nil {
		t.Fatalf("deploy/clients.example.yaml: %v", err)
	}
	if len(clients) == 0 || clients[0].ID != "demo" {
		t.Errorf("example registry clients = %v; want the demo client first", clients)
	}
}
