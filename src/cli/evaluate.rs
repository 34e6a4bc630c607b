//! `stagegate evaluate MODEL [VERSION] [--promote] [--json] [--junit FILE] [--summary FILE]`:
//! the one-shot CI path.

use super::stdout::{out, outln};
use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use stagegate::decision::Options;
use stagegate::engine;

use super::ci_files::Reports;
use super::output;

pub struct Args<'a> {
    pub config: Option<&'a Path>,
    pub model: &'a str,
    pub version: Option<&'a str>,
    pub promote: bool,
    pub json: bool,
}

pub async fn run(a: Args<'_>, reports: &Reports) -> anyhow::Result<u8> {
    reports.check()?;
    let work = async {
        let loaded = super::load_config(a.config)?;
        let engine = super::engine(&loaded)?;
        let outcome = engine
            .evaluate_and_act(
                a.model,
                a.version,
                Options {
                    act: a.promote,
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
        _ = term.recv() => return fail(&a, reports, "interrupted by SIGTERM"),
        _ = int.recv() => return fail(&a, reports, "interrupted by SIGINT"),
    };
    let (outcome, requests) = match result {
        Ok((Ok(o), n)) => (o, n),
        Ok((Err(e), _)) => return fail(&a, reports, &e.to_string()),
        Err(e) => return fail(&a, reports, &format!("{e:#}")),
    };
    let shown = if a.json {
        outln!("{}", output::evaluation_json(&outcome, requests))
    } else {
        out!("{}", output::evaluation_text(&outcome))
    };
    if let Some(err) = &outcome.act_error {
        eprintln!("error: {err}");
    }
    let code = engine::exit_code(&outcome);
    // The verdict is recorded in MLflow whatever happens here; an output or a report CI
    // cannot read is an error all the same, never a silent pass.
    let mut failed = false;
    for e in [shown, reports.write(&outcome)]
        .into_iter()
        .filter_map(Result::err)
    {
        eprintln!("error: {e:#}");
        failed = true;
    }
    Ok(if failed { code.max(2) } else { code })
}

/// Errors exit 2; with --json the document still comes out, and the CI reports too, so CI
/// shows why.
fn fail(a: &Args, reports: &Reports, msg: &str) -> anyhow::Result<u8> {
    if a.json
        && let Err(e) = outln!("{}", output::error_json(a.model, a.version, msg))
    {
        eprintln!("error: {e:#}");
    }
    eprintln!("error: {msg}");
    if let Err(e) = reports.write_error(a.model, a.version, msg) {
        eprintln!("error: {e:#}");
    }
    Ok(2)
}
