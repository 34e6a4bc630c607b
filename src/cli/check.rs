//! `stagegate check`: validate the config, reach MLflow (with auth), and list which registered
//! models each policy matches, with their current candidate and champion.

use std::path::Path;

use stagegate::config::Target;
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
