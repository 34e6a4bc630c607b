//! Several `stagegate run` replicas sharing one throwaway PostgreSQL database, for
//! tests/suite/replicas.rs: start them, read the shared tables with `psql` (the oracle reads what
//! the replicas wrote, not what they say), tell which replica holds a model, and find the
//! command-gate processes of one replica.
//!
//! Each replica gets its own value of [`REPLICA_ENV`] in its environment. Command gates inherit
//! the daemon's environment, so a gate's processes can be told apart by replica: after a
//! `kill -9` of one replica, the other may be running the very same command for the same model.

use std::time::Duration;

use serde_json::{Value, json};

use super::daemon::{Daemon, free_port, tail};
use super::postgres::PgCluster;

/// The database every replica of a test shares.
pub const DB: &str = "stagegate";

/// Set to a per-replica value in each daemon's environment (not a `STAGEGATE_*` name: those
/// are configuration overrides).
pub const REPLICA_ENV: &str = "SG_TEST_REPLICA";

pub struct Replicas {
    // Declared first so they drop (and stop, and delete their webhooks) before the database.
    pub daemons: Vec<Daemon>,
    /// Each replica's id as its `/status` says (`replica.id`), the owner name in `leases`.
    pub ids: Vec<String>,
    /// Each replica's [`REPLICA_ENV`] value.
    tags: Vec<String>,
    pub pg: PgCluster,
    pub url: String,
}

impl Replicas {
    /// A fresh PostgreSQL cluster and `n` replicas on one database of it, each with config
    /// `body` (see [`Daemon::start`]) and `state.lease = lease`.
    pub fn start(n: usize, prefix: &str, body: &str, lease: &str) -> Replicas {
        let pg = PgCluster::start();
        let url = pg.create_database(DB);
        let mut daemons = Vec::new();
        let mut tags = Vec::new();
        for i in 0..n {
            // A tag no other replica's is a prefix of: processes are matched on `KEY=VALUE…`.
            let tag = format!("{prefix}-replica-{i}.");
            let env = [
                ("STAGEGATE_STATE__URL", url.as_str()),
                // The harness's config already has a [state] table (path); a second one in
                // the body would be a TOML error, so the lease comes from the environment.
                ("STAGEGATE_STATE__LEASE", lease),
                (REPLICA_ENV, tag.as_str()),
            ];
            daemons.push(Daemon::start_env(
                &super::mlflow_uri(),
                free_port(),
                body,
                &env,
            ));
            tags.push(tag);
        }
        let ids = daemons
            .iter()
            .map(|d| {
                let s = d.status();
                assert_eq!(
                    s["store"]["backend"]
                        .as_str()
                        .map(|b| b.starts_with("postgres")),
                    Some(true),
                    "the replica runs on the shared store: {}",
                    s["store"]
                );
                s["replica"]["id"]
                    .as_str()
                    .expect("replica.id in /status")
                    .to_string()
            })
            .collect::<Vec<_>>();
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), n, "replica ids are unique: {ids:?}");
        Replicas {
            daemons,
            ids,
            tags,
            pg,
            url,
        }
    }

    pub fn d(&self, i: usize) -> &Daemon {
        &self.daemons[i]
    }

    /// `sql` in the shared database; psql's rows, trimmed.
    pub fn sql(&self, sql: &str) -> String {
        self.pg.psql(DB, sql).trim().to_string()
    }

    /// A query answering one number.
    pub fn count(&self, sql: &str) -> i64 {
        let out = self.sql(sql);
        out.parse()
            .unwrap_or_else(|e| panic!("{sql}: not a number ({e}): {out:?}"))
    }

    /// `promoted` rows in the audit log for `model`.
    pub fn promotions(&self, model: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM audit WHERE model = '{model}' AND action = 'promoted'"
        ))
    }

    /// `model`'s evaluation rows, oldest first: `id|version|status|verdict`.
    pub fn evaluations(&self, model: &str) -> Vec<String> {
        self.sql(&format!(
            "SELECT id, version, status, coalesce(verdict, '') FROM evaluations \
             WHERE model = '{model}' ORDER BY id"
        ))
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Pairs of `model`'s evaluations whose [started, finished] intervals overlap (a running
    /// one counts as unfinished): two replicas judging one model at once.
    pub fn overlapping(&self, model_like: &str) -> String {
        self.sql(&format!(
            "SELECT a.model, a.id, b.id FROM evaluations a JOIN evaluations b \
               ON a.model = b.model AND a.id < b.id \
             WHERE a.model LIKE '{model_like}' \
               AND a.started_at < coalesce(b.finished_at, 9223372036854775807) \
               AND b.started_at < coalesce(a.finished_at, 9223372036854775807)"
        ))
    }

    /// The replica (index) holding a live lease on `model`, by the `leases` table.
    pub fn holder(&self, model: &str) -> Option<usize> {
        let owner = self.sql(&format!(
            "SELECT owner FROM leases WHERE kind = 'model' AND name = '{model}' \
             AND expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
        ));
        self.ids.iter().position(|id| *id == owner)
    }

    /// The owner named in `model`'s lease row, live or not (`""` when there is none).
    pub fn lease_owner(&self, model: &str) -> String {
        self.sql(&format!(
            "SELECT owner FROM leases WHERE kind = 'model' AND name = '{model}'"
        ))
    }

    /// Live processes of a command gate that replica `i` runs for `model`.
    pub fn gate_processes(&self, i: usize, model: &str) -> Vec<u32> {
        let of_replica = super::processes_with_env(&format!("{REPLICA_ENV}={}", self.tags[i]));
        super::processes_with_env(&format!("MODEL_NAME={model}"))
            .into_iter()
            .filter(|p| of_replica.contains(p))
            .collect()
    }

    /// The replica (index) running a command gate for `model` now, if one is.
    pub fn running_gate(&self, model: &str) -> Option<usize> {
        (0..self.daemons.len()).find(|&i| !self.gate_processes(i, model).is_empty())
    }

    /// Poll `cond` ([`super::eventually`]) until it holds; after `timeout`, panic with every
    /// replica's log.
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !super::eventually(timeout, cond) {
            panic!("timed out waiting for {what}\n{}", self.logs(40));
        }
    }

    /// The tail of every replica's log, labelled, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        self.daemons
            .iter()
            .enumerate()
            .map(|(i, d)| {
                format!(
                    "--- replica {i} ({}) ---\n{}\n",
                    self.ids[i],
                    tail(&d.log(), lines)
                )
            })
            .collect()
    }
}

/// Config for models `{prefix}*` (the harness adds [mlflow], [server], [state]): a stage
/// candidate promoted to Production when `val_accuracy >= 0.85`, then `extra_gates`.
pub fn body(prefix: &str, schedule: &str, workers: usize, extra_gates: &str) -> String {
    super::metric_policy("replicated", prefix, schedule, workers, extra_gates)
}

/// A fixture op registering a (light) model version of `name` with `val_accuracy = acc`,
/// moved to Staging: a candidate.
pub fn candidate(name: &str, acc: f64) -> Value {
    json!({"op": "register", "name": name, "metrics": {"val_accuracy": acc},
           "stage": "Staging", "light": true})
}

/// `model` v`version` as MLflow has it now: (stage, `stagegate.action`, `stagegate.verdict`).
pub fn registry(model: &str, version: &str) -> (String, Option<String>, Option<String>) {
    let v = super::block(super::version(model, version));
    let tag = |k: &str| v.tag(k).map(str::to_string);
    (
        v.current_stage.clone(),
        tag("stagegate.action"),
        tag("stagegate.verdict"),
    )
}

/// Whether `model` v`version` is in Production with `action = promoted`.
pub fn promoted(model: &str, version: &str) -> bool {
    let (stage, action, _) = registry(model, version);
    stage == "Production" && action.as_deref() == Some("promoted")
}
