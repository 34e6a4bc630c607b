//! Post-promotion analysis: after a promotion, the new champion is watched in production by
//! queries to a metrics provider, measured every `interval`, `count` times, each measurement
//! judged against `min`/`max` with tolerated numbers of failed and inconclusive measurements
//! (Argo Rollouts' AnalysisTemplate semantics).
//!
//! - [`provider`] asks a provider (Prometheus, a JSON web endpoint) for one value, and says
//!   "inconclusive" for anything that is not one finite number: an empty result, NaN, several
//!   series, a failed request.
//! - [`judge`] turns the measurements so far into an outcome (pure).

pub mod judge;
pub mod provider;
