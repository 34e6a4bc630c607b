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
pub mod round;
pub mod step;

use crate::config::analysis::{Analysis, Metric, ProviderKind};
use crate::secret::Secret;
use judge::{Limits, Thresholds};
use provider::{Credentials, Query};

pub fn limits(a: &Analysis) -> Limits {
    Limits {
        count: a.count,
        failure_limit: a.failure_limit,
        inconclusive_limit: a.inconclusive_limit,
    }
}

pub fn thresholds(m: &Metric) -> Thresholds {
    Thresholds {
        min: m.min,
        max: m.max,
    }
}

/// The query a metric makes (its keys were checked against its provider at load).
pub fn query(m: &Metric) -> Query {
    match m.provider {
        ProviderKind::Prometheus => Query::Prometheus {
            address: m.address.clone().unwrap_or_default(),
            query: m.query.clone().unwrap_or_default(),
        },
        ProviderKind::Web => Query::Web {
            url: m.url.clone().unwrap_or_default(),
            pointer: m.pointer.clone().unwrap_or_default(),
        },
    }
}

/// The credentials the environment holds for `m`; an error names a variable that is not set
/// (a value is never shown).
pub fn credentials(m: &Metric) -> Result<Credentials, String> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| {
            format!(
                "metric {:?}: the environment variable {name} is not set",
                m.name
            )
        })
    };
    Ok(match (&m.token_env, &m.username_env, &m.password_env) {
        (Some(t), _, _) => Credentials::Bearer(Secret::new(var(t)?)),
        (None, Some(u), Some(p)) => Credentials::Basic {
            user: var(u)?,
            password: Secret::new(var(p)?),
        },
        _ => Credentials::None,
    })
}
