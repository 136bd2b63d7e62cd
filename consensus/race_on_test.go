//go:build race

package consensus

// defaultSeeds is smaller under the race detector, which slows the
// simulation about tenfold.
const defaultSeeds = 2000
