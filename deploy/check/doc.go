// Package check holds the tests of the deployment files: the Helm chart in
// deploy/helm/alumini and docker-compose.yml, rendered and decoded as
// Kubernetes and Compose would, and wired to the services' real flags,
// ports and health endpoints.
package check
