//! `stagegate run`: the daemon. Owns the process edge: the listening socket, signals
//! (SIGTERM/SIGINT stop, SIGHUP reloads) and systemd readiness.

use std::path::Path;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use stagegate::config;
use stagegate::daemon;

pub async fn run(config_path: Option<&Path>) -> anyhow::Result<u8> {
    let loaded = super::load_config(config_path)?;
    let listen = daemon::check_listen(&loaded)?;
    let path = loaded.path.clone();
    let app = daemon::prepare(loaded, listen).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    };
    let (reload_tx, reload_rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
            // Reading the file blocks: off the async workers.
            let file = path.clone();
            let loaded = tokio::task::spawn_blocking(move || config::load(Some(&file))).await;
            match loaded.unwrap_or_else(|e| {
                Err(config::ConfigError::new(
                    path.display().to_string(),
                    "",
                    e.to_string(),
                ))
            }) {
                Ok(loaded) => {
                    if reload_tx.send(loaded).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!("configuration reload refused, keeping the old one: {e}"),
            }
        }
    });
    daemon::run(app, listener, shutdown, reload_rx, || {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    })
    .await?;
    Ok(0)
}
