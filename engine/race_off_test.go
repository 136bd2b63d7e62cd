//go:build !race

package engine

// simSeeds is how many seeds TestSimulation runs.
const simSeeds = 10000
