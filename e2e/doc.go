// Package e2e runs the built Alumini binaries as a user would: events go in
// at the collector and come out of the reporter.
package e2e
