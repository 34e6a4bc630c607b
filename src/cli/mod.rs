//! The command-line surface (docs/reference.md). Each subcommand lives in its own file; this one parses
//! arguments, sets up logging (stderr) and maps errors to exit code 2.

mod analysis;
mod check;
mod check_analysis;
mod ci_files;
mod docs;
mod evaluate;
mod junit;
mod output;
mod rollback;
mod run;
mod status;
mod stdout;
mod summary;
#[cfg(test)]
mod test_outcome;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum, ValueHint};

use stagegate::config::{self, Loaded};
use stagegate::engine::Engine;
use stagegate::mlflow::{Client, Settings};

#[derive(Parser)]
#[command(
    name = "stagegate",
    version,
    about = "Guards the MLflow Model Registry: evaluates candidates against quality gates and promotes the ones that pass."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// `--config`, shared by every subcommand that reads the config (one help text for all).
#[derive(Args)]
struct ConfigArg {
    /// The config file (TOML). Without --config: $STAGEGATE_CONFIG, else ./stagegate.toml, else
    /// /etc/stagegate/stagegate.toml.
    ///
    /// Search order: --config FILE when given; else the file $STAGEGATE_CONFIG names, when set;
    /// else ./stagegate.toml in the current directory, when it exists; else
    /// /etc/stagegate/stagegate.toml. A file named by --config or $STAGEGATE_CONFIG must exist
    /// (no fallback past it). Environment variables STAGEGATE_<SECTION>__<KEY> (e.g.
    /// STAGEGATE_POLL__SCHEDULE="*/30 * * * * *") override the file's keys.
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: webhooks, the reconcile poll, the worker pool, the status API.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Evaluate a version (default: the newest candidate), record tags; promote with --promote.
    /// Exit 0 = all gates passed, 1 = a gate failed, 2 = error or inconclusive.
    Evaluate {
        /// Registered model name.
        model: String,
        /// Version number; the newest candidate of the matching policy if omitted.
        version: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
        /// Act on the verdict (promote, archive); without it nothing moves.
        #[arg(long)]
        promote: bool,
        /// Print one JSON document on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write the result as JUnit XML to FILE (one test case per gate), replacing it.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Also append the result as a markdown table to FILE (e.g. $GITHUB_STEP_SUMMARY).
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
    },
    /// Validate the config, reach MLflow, and list what each policy matches.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Validate the config only, without contacting MLflow: list its policies and gates.
        #[arg(long)]
        offline: bool,
    },
    /// Create or update the MLflow webhook that notifies the daemon.
    Webhook {
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// Show a running daemon's status.
    Status {
        /// The daemon's base URL; default: $STAGEGATE_URL, else http://<server.listen> of the
        /// config, else http://127.0.0.1:8080.
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
        /// Print the raw /status JSON.
        #[arg(long)]
        json: bool,
    },
    /// A running daemon's post-promotion analyses: list them, show one, or end one by hand.
    Analysis {
        #[command(subcommand)]
        action: AnalysisAction,
        /// The daemon's base URL; default: $STAGEGATE_URL, else http://<server.listen> of the
        /// config, else http://127.0.0.1:8080.
        #[arg(long, global = true)]
        url: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Restore the version that the current champion replaced.
    Rollback {
        /// Registered model name.
        model: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the shell completion script for SHELL on stdout.
    ///
    /// bash: `stagegate completions bash > /etc/bash_completion.d/stagegate`;
    /// zsh: `stagegate completions zsh > "${fpath[1]}/_stagegate"`;
    /// fish: `stagegate completions fish > ~/.config/fish/completions/stagegate.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or write one page per command into a directory.
    ///
    /// `stagegate man | man -l -` reads it; `stagegate man --out /usr/local/share/man/man1`
    /// installs stagegate.1 and stagegate-<command>.1.
    Man {
        /// Write stagegate.1 and one stagegate-<command>.1 per subcommand into DIR instead.
        #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AnalysisAction {
    /// Analyses, newest first: model, version, rounds measured, outcome.
    List {
        /// Only this model's.
        #[arg(long)]
        model: Option<String>,
        /// At most this many (1–1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One analysis with every measurement.
    Show {
        id: i64,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a running analysis now as passed or failed. `failed` is handled as a failed
    /// measurement would be: with on_failure = "rollback", the replaced champion is restored.
    /// Sends server.api_token (or $STAGEGATE_SERVER__API_TOKEN) as the bearer token.
    End {
        id: i64,
        /// passed or failed.
        #[arg(long, value_parser = ["passed", "failed"])]
        outcome: String,
        /// Why, recorded in the tag, the audit log and the notification.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum WebhookAction {
    /// Create or update (by name) the webhook, signed with the first webhooks.secrets entry.
    Register {
        /// Where MLflow should deliver, e.g. http://stagegate:8080/webhooks/mlflow
        #[arg(long)]
        url: String,
        #[command(flatten)]
        config: ConfigArg,
        /// The webhook's name in MLflow (one per stagegate deployment).
        #[arg(long, default_value = "stagegate")]
        name: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Evaluate {
                model,
                version,
                config,
                promote,
                json,
                junit,
                summary,
            } => {
                let reports = ci_files::Reports { junit, summary };
                let args = evaluate::Args {
                    config: config.config.as_deref(),
                    model: &model,
                    version: version.as_deref(),
                    promote,
                    json,
                };
                evaluate::run(args, &reports).await
            }
            Command::Check { config, offline } => {
                check::run(config.config.as_deref(), offline).await
            }
            Command::Run { config } => run::run(config.config.as_deref()).await,
            Command::Webhook {
                action: WebhookAction::Register { url, config, name },
            } => webhook::register(config.config.as_deref(), &url, &name).await,
            Command::Status { url, config, json } => {
                status::run(&status_url(url, config.config.as_deref()), json).await
            }
            Command::Analysis {
                action,
                url,
                config,
            } => {
                let path = config.config.as_deref();
                let token = config::load(path)
                    .ok()
                    .and_then(|l| l.config.server.api_token.map(|t| t.expose().to_string()));
                let daemon = analysis::Daemon {
                    url: status_url(url, path),
                    token,
                };
                match action {
                    AnalysisAction::List { model, limit, json } => {
                        analysis::list(&daemon, model.as_deref(), limit, json).await
                    }
                    AnalysisAction::Show { id, json } => analysis::show(&daemon, id, json).await,
                    AnalysisAction::End {
                        id,
                        outcome,
                        reason,
                    } => analysis::end(&daemon, id, &outcome, reason.as_deref()).await,
                }
            }
            Command::Rollback { model, config } => {
                rollback::run(config.config.as_deref(), &model).await
            }
            Command::Completions { shell } => docs::completions(Cli::command(), shell),
            Command::Man { out } => docs::man(Cli::command(), out.as_deref()),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only for a person at a terminal: files, pipes and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Load the config (exit 2 with file, key and reason on error).
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Loaded> {
    Ok(config::load(path)?)
}

/// A client for the configured MLflow, honouring the standard MLflow environment variables.
fn client(loaded: &Loaded) -> anyhow::Result<Client> {
    Settings::from_env(&loaded.config.mlflow)
        .and_then(Client::new)
        .context("MLflow client")
}

fn engine(loaded: &Loaded) -> anyhow::Result<Engine> {
    Ok(Engine::new(client(loaded)?, loaded, None))
}

/// `--url`, else `$STAGEGATE_URL`, else the config's `server.listen`, else the default port.
fn status_url(url: Option<String>, config: Option<&std::path::Path>) -> String {
    url.or_else(|| {
        std::env::var("STAGEGATE_URL")
            .ok()
            .filter(|u| !u.is_empty())
    })
    .or_else(|| {
        config::load(config)
            .ok()
            .map(|l| format!("http://{}", l.config.server.listen))
    })
    .unwrap_or_else(|| "http://127.0.0.1:8080".into())
}
