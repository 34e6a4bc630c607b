//! `stagegate check`'s word on post-promotion analyses: each metric's query is sent once to
//! its provider, filled in for each matched model's current champion, so a wrong address, a
//! missing credential or a PromQL error shows before the first promotion needs it. A query
//! that runs but finds no series is a warning (the model may not be serving yet); a provider
//! that does not answer, or refuses the query, fails the check.

use stagegate::analysis::judge::Point;
use stagegate::analysis::provider::{Vars, ask, value};
use stagegate::analysis::{credentials, query, thresholds};
use stagegate::config::{Loaded, Policy, Target};
use stagegate::model_state::ModelState;

/// `{previous}` is filled with nothing here: the champion's tags are not read.
///
/// The lines to print, and whether every provider answered every query.
pub async fn lines(loaded: &Loaded, models: &[ModelState]) -> (Vec<String>, bool) {
    let http = reqwest::Client::new();
    let mut asks = Vec::new();
    for p in &loaded.config.policies {
        let Some(a) = &p.analysis else { continue };
        let champions: Vec<Vars> = models
            .iter()
            .filter(|m| loaded.config.policy_for(&m.name).map(|q| &q.name) == Some(&p.name))
            .filter_map(|m| Some(vars(p, &m.name, m.champion_version(p)?)))
            .collect();
        for metric in &a.metrics {
            if champions.is_empty() {
                asks.push(Ask::NoChampion(p.name.clone(), metric.name.clone()));
            }
            for v in &champions {
                asks.push(Ask::Query(p, metric, v.clone(), a.timeout));
            }
        }
    }
    let answers = futures::future::join_all(asks.iter().map(|a| a.run(&http))).await;
    let answered = answers.iter().all(|(_, ok)| *ok);
    (answers.into_iter().map(|(l, _)| l).collect(), answered)
}

enum Ask<'a> {
    Query(
        &'a Policy,
        &'a stagegate::config::analysis::Metric,
        Vars,
        std::time::Duration,
    ),
    NoChampion(String, String),
}

impl Ask<'_> {
    async fn run(&self, http: &reqwest::Client) -> (String, bool) {
        let (p, m, v, timeout) = match self {
            Ask::NoChampion(p, m) => {
                return (
                    format!("analysis {p}/{m}: no matched model has a champion yet; not asked"),
                    true,
                );
            }
            Ask::Query(p, m, v, t) => (p, m, v, *t),
        };
        let head = format!(
            "analysis {}/{} for {} v{}",
            p.name, m.name, v.model, v.version
        );
        let creds = match credentials(m) {
            Ok(c) => c,
            Err(e) => return (format!("{head}: error: {e}"), false),
        };
        let q = query(m);
        match ask(http, &q, v, &creds, timeout).await {
            Err(why) => (format!("{head}: error: {why}"), false),
            Ok(answer) => match thresholds(m).judge(&value(&answer, &q)) {
                Point::Pass(x) => (format!("{head}: {x} (within its thresholds)"), true),
                Point::Fail(x, t) => (format!("{head}: {x} (outside: {t})"), true),
                Point::Inconclusive(why) => (
                    format!("{head}: warning: the query ran, no value: {why}"),
                    true,
                ),
            },
        }
    }
}

fn vars(p: &Policy, model: &str, champion: &str) -> Vars {
    let (alias, stage) = match p.promote.target() {
        Target::Alias(a) => (a, String::new()),
        Target::Stage(s) => (String::new(), s),
    };
    Vars {
        model: model.into(),
        version: champion.into(),
        previous: String::new(),
        alias,
        stage,
    }
}
