//go:build !race

package consensus

const defaultSeeds = 5000
