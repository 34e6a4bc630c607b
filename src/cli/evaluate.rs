//! `stagegate evaluate MODEL [VERSION] [--promote] [--json]`: the one-shot CI path.

use std::path::Path;

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
    let result = async {
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
    }
    .await;
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
