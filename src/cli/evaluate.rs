//! `stagegate evaluate MODEL [VERSION] [--promote] [--json]`: the one-shot CI path.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use stagegate::decision::Options;
use stagegate::engine;

use super::output;

pub async fn run(
    config: Option<&Path>,
    model: &str,
    version: Option<&str>,
    promote: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let work = async {
        let loaded = super::load_config(config)?;
        let engine = super::engine(&loaded)?;
        let outcome = engine
            .evaluate_and_act(
                model,
                version,
                Options {
                    act: promote,
                    paused: false,
                },
            )
            .await;
        anyhow::Ok((outcome, engine.client.request_count()))
    };
    // SIGTERM/SIGINT cancel the evaluation: dropping it stops any model it was serving and
    // any command it was running, before the process exits.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let result = tokio::select! {
        r = work => r,
        _ = term.recv() => return fail(json, model, version, "interrupted by SIGTERM"),
        _ = int.recv() => return fail(json, model, version, "interrupted by SIGINT"),
    };
    let (outcome, requests) = match result {
        Ok((Ok(o), n)) => (o, n),
        Ok((Err(e), _)) => return fail(json, model, version, &e.to_string()),
        Err(e) => return fail(json, model, version, &format!("{e:#}")),
    };
    if json {
        println!("{}", output::evaluation_json(&outcome, requests));
    } else {
        print!("{}", output::evaluation_text(&outcome));
    }
    if let Some(err) = &outcome.act_error {
        eprintln!("error: {err}");
    }
    Ok(engine::exit_code(&outcome))
}

/// Errors exit 2; with --json the document still comes out, so CI can parse it.
fn fail(json: bool, model: &str, version: Option<&str>, msg: &str) -> anyhow::Result<u8> {
    if json {
        println!("{}", output::error_json(model, version, msg));
    }
    eprintln!("error: {msg}");
    Ok(2)
}
