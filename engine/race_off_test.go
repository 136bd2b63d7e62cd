//go:build !race

package engine

// simSeeds is how many seeds TestSimulation runs.
const simSeeds = 10000

// scenarioSeeds is how many seeds each scenario of TestScenarios runs.
const scenarioSeeds = 40
