//! `stagegate rollback MODEL`: restore the version the current champion replaced.

use super::stdout::outln;
use std::path::Path;

use stagegate::actions::Actor;

pub async fn run(config: Option<&Path>, model: &str) -> anyhow::Result<u8> {
    let loaded = super::load_config(config)?;
    let engine = super::engine(&loaded)?;
    let policy = engine.policy_for(model)?;
    let actor = Actor {
        client: &engine.client,
        names: &engine.names,
        policy,
    };
    let (from, to) = actor.rollback(model).await?;
    outln!(
        "rolled back {model}: v{from} -> v{to} ({})",
        policy.promote.target()
    )?;
    Ok(0)
}
