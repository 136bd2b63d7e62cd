// Package scoring turns one peer's probe samples into evidence for
// suspicion: a threshold score, a Gaussian-mixture anomaly probability and an
// adaptive probe timeout.
//
// The package is pure: no I/O, no clock, no goroutines, no logging and no
// global randomness. Time enters only as the durations inside a Sample;
// randomness only as Config.Seed.
//
// # Model
//
// A Peer keeps a sliding window of its last Config.Window answered samples.
//
// Threshold scorer. For each metric (RTT, gap between answers, CPU, memory,
// load average) the baseline is the median of that metric over the window,
// and threshold = α·baseline + β with α, β per metric in Config. The score of
// a sample is the largest value/threshold over the metrics it carries. It
// works from Config.MinBaseline samples on and is the only evidence until the
// mixture is ready.
//
// Mixture. Each answered sample with a known gap is the feature vector
// x = [ln RTT, ln gap] (seconds). Refit fits Gaussian mixtures with diagonal
// covariance and K = 1..Kmax components by EM, each started from k-means++
// (seeded PCG stream (Seed, refit number)), with a per-dimension variance
// floor, and keeps the K with the lowest BIC. After the fit it records
//
//   - a calibration table of the training NLLs (empirical quantiles plus an
//     exponential peaks-over-threshold tail), so that an answered sample's
//     NLL becomes PFail = 1 − P(a healthy sample is at least as unlikely);
//   - the adaptive timeout: the TimeoutQuantile-quantile of the RTT marginal
//     of the mixture, clamped to [MinTimeout, MaxTimeout].
//
// Misses. A miss is never learned. Its RTT is censored (longer than the time
// the prober waited, Sample.RTT) and the peer has been silent for Sample.Gap.
// PFail of a miss is 1 − min(S_rtt(waited), S_gap(silence)), where S is the
// survival function of the corresponding marginal of the mixture: a one-sided
// test, so a miss at exactly the adaptive timeout has PFail = TimeoutQuantile,
// and PFail rises towards 1 as the silence grows past the gaps seen while
// healthy. Suspicion counts misses itself; PFail tells it how surprising each
// one is for this peer.
//
// Diagonal covariance was chosen over full: with two features the mixture
// itself captures the coarse dependence between RTT and gap, a diagonal
// component needs 2d+1 instead of d(d+3)/2+1 parameters (a milder BIC penalty
// and a stabler fit on a 100-sample window), the variance floor is a clamp
// instead of an eigenvalue fix, the RTT and gap marginals that give the
// timeout and the miss evidence are read off directly, and scoring needs no
// matrix code, so it does not allocate.
//
// # Caller's obligations
//
//   - Report every probe once: an answer with its RTT and the gap since the
//     previous answer, or a miss with the time waited and the time since the
//     last answer. A late answer (after the timeout) is still an answer:
//     Observe it with its real RTT so that the model can follow a peer that
//     became slower.
//   - Observe never refits. Call Refit when NeedsRefit reports true; it costs
//     a few milliseconds for a window of 1000 (BenchmarkFit1000), so the agent
//     may run it off its hot path, but not concurrently: a Peer is not safe for
//     concurrent use.
//   - Use Result.Timeout for the next probe of the peer.
//   - Until Result.GMMReady, PFail and NLL are 0: rely on Result.Threshold.
//   - Persist with MarshalBinary and restore with DecodeSnapshot; a decoded
//     Peer behaves exactly like the one encoded.
package scoring
