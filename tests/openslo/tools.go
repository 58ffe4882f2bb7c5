//go:build tools

// Package tools pins the OpenSLO project's `oslo` CLI, which the end-to-end tests use to
// validate `cerflow export openslo`. scripts/oslo.sh builds it from this module (go.sum
// pins every checksum) into .cache/oslo/<version>/oslo.
package tools

import _ "github.com/OpenSLO/oslo/cmd/oslo"
