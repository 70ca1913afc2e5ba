// Package proto holds Alumini's event schema (see alumini/v1) and the check that its generated Go code is current.
package proto
