//! `stagegate check`: validate the config, reach MLflow (with auth), say whether the server
//! offers webhooks, and list which registered models each policy matches, with their current
//! candidate and champion.

use std::path::Path;

use stagegate::config::Target;
use stagegate::mlflow::MlflowError;
use stagegate::model_state::ModelState;

use super::output::table;

pub async fn run(config: Option<&Path>) -> anyhow::Result<u8> {
    let loaded = super::load_config(config)?;
    let policies = &loaded.config.policies;
    println!(
        "config  {}: ok ({} {})",
        loaded.path.display(),
        policies.len(),
        plural(policies.len(), "policy", "policies")
    );
    let client = super::client(&loaded)?;
    if let Err(e) = client.ping().await {
        eprintln!("error: {e}");
        return Ok(2);
    }
    println!("mlflow  {}: reachable", client.shown_uri());
    println!(
        "{}",
        webhooks_line(
            client.has_webhooks_api().await,
            &loaded.config.poll.schedule
        )
    );
    let models = client.all_registered_models().await?;
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    for rm in models {
        let state = ModelState::from_registered(rm);
        match loaded.config.policy_for(&state.name) {
            Some(p) => rows.push(vec![
                p.name.clone(),
                state.name.clone(),
                describe(&state, p.candidate()),
                describe(&state, &p.promote.target()),
            ]),
            None => unmatched.push(state.name.clone()),
        }
    }
    println!();
    if rows.is_empty() {
        println!("no registered model matches a policy");
    } else {
        print!(
            "{}",
            table(&["POLICY", "MODEL", "CANDIDATE", "CHAMPION"], &rows)
        );
    }
    for p in policies
        .iter()
        .filter(|p| !rows.iter().any(|r| r[0] == p.name))
    {
        println!("policy {} matches no registered model", p.name);
    }
    if !unmatched.is_empty() {
        println!(
            "{} {} no policy: {}",
            unmatched.len(),
            plural(unmatched.len(), "model matches", "models match"),
            unmatched.join(", ")
        );
    }
    Ok(0)
}

/// What the webhooks probe found. A server without webhooks is not an error: the poll finds
/// every candidate anyway, so `check` says so and still exits 0.
fn webhooks_line(probe: Result<bool, MlflowError>, schedule: &str) -> String {
    match probe {
        Ok(true) => "webhooks  offered by this server (stagegate webhook register --url …)".into(),
        Ok(false) => format!(
            "webhooks  none: this server has no webhooks API (they need MLflow 3.3 or later with a \
             database backend); the poll (poll.schedule = \"{schedule}\") still finds every \
             candidate, only later"
        ),
        Err(e) => format!("webhooks  unknown: could not tell whether this server offers them: {e}"),
    }
}

/// The newest version at `target`, e.g. `v3 (Staging)` or `v5 (@champion)`, or `-`.
fn describe(state: &ModelState, target: &Target) -> String {
    match target {
        Target::Stage(s) => state
            .versions
            .values()
            .rev()
            .find(|v| &v.current_stage == s)
            .map(|v| format!("v{} ({s})", v.version))
            .unwrap_or_else(|| "-".into()),
        Target::Alias(a) => state
            .aliases
            .get(a)
            .map(|v| format!("v{v} (@{a})"))
            .unwrap_or_else(|| "-".into()),
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
