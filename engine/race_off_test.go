//go:build !race

package engine

// simSeeds is how many seeds TestSimulation runs by default; make test
// runs 10,000 (-sim.seeds).
const simSeeds = 300

// scenarioSeeds is how many seeds each scenario of TestScenarios runs.
const scenarioSeeds = 40
