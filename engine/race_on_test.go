//go:build race

package engine

// simSeeds is how many seeds TestSimulation runs: fewer under the race
// detector, which slows it tenfold; the build without it runs 10,000.
const simSeeds = 30

// scenarioSeeds is how many seeds each scenario of TestScenarios runs.
const scenarioSeeds = 8
