//! Every statement of the store, written once in the SQL that SQLite and PostgreSQL share:
//! `$1`, `$2`… are parameters and `{now}` is the store's clock in unix milliseconds; each
//! backend renders both in its dialect ([`super::Sql::render`]). A nullable parameter is
//! compared through `CAST(… AS type)`, which both read as "this parameter has that type".

// ---- webhook deliveries ------------------------------------------------------------------

pub const RECORD_DELIVERY: &str = "INSERT INTO deliveries (source, id, received_at, event, model)
     VALUES ($1, $2, {now}, $3, $4) ON CONFLICT DO NOTHING";
pub const PRUNE_DELIVERIES: &str = "DELETE FROM deliveries WHERE received_at < {now} - $1";
pub const DELIVERY_COUNT: &str = "SELECT COUNT(*) FROM deliveries";

// ---- evaluations -------------------------------------------------------------------------

/// The columns [`super::evaluation_row`] reads, in its order.
macro_rules! evaluation_columns {
    () => {
        "id, model, version, policy, digest, trigger, status, verdict, action, gates, error, \
         started_at, finished_at, duration_ms, champion, serving"
    };
}

pub const BEGIN_EVALUATION: &str =
    "INSERT INTO evaluations (model, version, policy, digest, trigger, status, started_at)
     VALUES ($1, $2, $3, $4, $5, 'running', {now}) RETURNING id";
/// Only a running row is closed: one another replica marked interrupted stays so.
pub const FINISH_EVALUATION: &str = "UPDATE evaluations SET status = 'done', verdict = $2,
     gates = $3, finished_at = {now}, duration_ms = {now} - started_at, champion = $4,
     serving = $5 WHERE id = $1 AND status = 'running'";
pub const FAIL_EVALUATION: &str = "UPDATE evaluations SET status = 'failed', error = $2,
     finished_at = {now}, duration_ms = {now} - started_at WHERE id = $1 AND status = 'running'";
/// On the version's latest evaluation only, and only if it is the verdict acted on.
pub const SET_ACTION: &str = "UPDATE evaluations SET action = $4
     WHERE id = (SELECT MAX(id) FROM evaluations WHERE model = $1 AND version = $2)
       AND status = 'done' AND (CAST($3 AS TEXT) IS NULL OR verdict = $3)";
pub const INTERRUPT_RUNNING: &str = "UPDATE evaluations SET status = 'interrupted',
     finished_at = {now} WHERE model = $1 AND status = 'running'";
/// Paging by id stays exact while new evaluations arrive, unlike an offset.
pub const EVALUATIONS_BEFORE: &str = concat!(
    "SELECT ",
    evaluation_columns!(),
    " FROM evaluations
     WHERE (CAST($1 AS TEXT) IS NULL OR model = $1) AND (CAST($2 AS BIGINT) IS NULL OR id < $2)
     ORDER BY id DESC LIMIT $3"
);
pub const EVALUATION: &str = concat!(
    "SELECT ",
    evaluation_columns!(),
    " FROM evaluations WHERE id = $1"
);
/// Read by [`super::totals_row`].
pub const TOTALS: &str = "SELECT COUNT(*),
            COUNT(*) FILTER (WHERE verdict = 'passed'),
            COUNT(*) FILTER (WHERE verdict = 'failed'),
            COUNT(*) FILTER (WHERE verdict = 'error'),
            (SELECT COUNT(*) FROM audit WHERE action = 'promoted')
     FROM evaluations WHERE status = 'done'";
/// Read by [`super::model_row`].
pub const MODELS: &str =
    "SELECT model, COUNT(*), MAX(id) FROM evaluations GROUP BY model ORDER BY model";
pub const LATEST_PER_MODEL: &str = concat!(
    "SELECT ",
    evaluation_columns!(),
    " FROM evaluations WHERE id IN (SELECT MAX(id) FROM evaluations GROUP BY model)"
);
pub const EVALUATION_COUNT: &str = "SELECT COUNT(*) FROM evaluations WHERE model = $1";
/// The newest `$2` versions, newest first. MLflow's versions are whole numbers and sort as
/// such; anything else (which MLflow does not make) sorts after them rather than failing a
/// cast, newest evaluation first.
pub const LATEST_PER_VERSION: &str = concat!(
    "SELECT ",
    evaluation_columns!(),
    " FROM evaluations WHERE id IN (
         SELECT MAX(id) FROM evaluations WHERE model = $1 AND status = 'done' GROUP BY version)
     ORDER BY CASE WHEN version <> '' AND LENGTH(version) <= 18
                        AND LTRIM(version, '0123456789') = ''
                   THEN CAST(version AS BIGINT) END DESC NULLS LAST,
              id DESC
     LIMIT $2"
);

// ---- audit -------------------------------------------------------------------------------

pub const AUDIT: &str = "INSERT INTO audit (at, model, version, action, detail)
     VALUES ({now}, $1, $2, $3, $4)";
/// A row unless one for (model, version, action) is there, with the same detail when `$5`.
pub const AUDIT_ABSENT: &str = "INSERT INTO audit (at, model, version, action, detail)
     SELECT {now}, $1, $2, $3, $4 WHERE NOT EXISTS (
         SELECT 1 FROM audit WHERE model = $1 AND version = $2 AND action = $3
                              AND (NOT $5 OR detail = $4))";
pub const LAST_AUDIT_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM audit";
/// Read by [`super::audit_row`].
pub const AUDIT_LOG: &str = "SELECT id, at, model, version, action, detail FROM audit
     WHERE (CAST($1 AS TEXT) IS NULL OR model = $1) ORDER BY id DESC LIMIT $2";

// ---- post-promotion analyses ---------------------------------------------------------------

/// The columns [`super::analysis_row`] reads, in its order.
macro_rules! analysis_columns {
    () => {
        "id, model, version, previous, target, policy, status, reason, step, measurements, \
         started_at, due_at, finished_at, settled_at"
    };
}

/// Nothing when one is running for the model (its partial unique index).
pub const BEGIN_ANALYSIS: &str = "INSERT INTO analyses
     (model, version, previous, target, policy, status, step, measurements, started_at, due_at)
     VALUES ($1, $2, $3, $4, $5, 'running', 0, '{}', {now}, {now} + $6)
     ON CONFLICT DO NOTHING RETURNING id";
pub const RUNNING_ANALYSES: &str = concat!(
    "SELECT ",
    analysis_columns!(),
    " FROM analyses WHERE status = 'running' ORDER BY due_at"
);
pub const ANALYSIS: &str = concat!(
    "SELECT ",
    analysis_columns!(),
    " FROM analyses WHERE id = $1"
);
pub const ANALYSES: &str = concat!(
    "SELECT ",
    analysis_columns!(),
    " FROM analyses WHERE (CAST($1 AS TEXT) IS NULL OR model = $1) ORDER BY id DESC LIMIT $2"
);
pub const RECORD_ROUND: &str = "UPDATE analyses SET step = step + 1, measurements = $3,
     due_at = {now} + $4 WHERE id = $1 AND step = $2 AND status = 'running'";
pub const FINISH_ANALYSIS: &str = "UPDATE analyses SET status = $2, reason = $3,
     finished_at = {now} WHERE id = $1 AND status = 'running'";
pub const SETTLE_ANALYSIS: &str = "UPDATE analyses SET settled_at = {now}
     WHERE id = $1 AND status <> 'running' AND settled_at IS NULL";
/// Models with an analysis to take a step on: a round due, or an outcome not yet settled.
pub const ANALYSES_DUE: &str = "SELECT DISTINCT model FROM analyses WHERE settled_at IS NULL
     AND (status <> 'running' OR due_at <= {now})";

// ---- the queue and re-evaluation requests ------------------------------------------------

pub const QUEUE_PUSH: &str = "INSERT INTO queue (model, queued_at) VALUES ($1, {now})
     ON CONFLICT (model) DO UPDATE SET queued_at = EXCLUDED.queued_at";
pub const QUEUE_REMOVE: &str = "DELETE FROM queue WHERE model = $1 AND queued_at <= $2";
pub const QUEUED: &str = "SELECT model FROM queue WHERE queued_at <= $1 ORDER BY queued_at";
pub const REQUEST_EVALUATION: &str =
    "INSERT INTO eval_requests (model, version, requested_at) VALUES ($1, $2, {now})";
pub const REQUESTS: &str =
    "SELECT version, MAX(seq) FROM eval_requests WHERE model = $1 GROUP BY version";
pub const REQUESTED_MODELS: &str = "SELECT DISTINCT model FROM eval_requests";
pub const CLEAR_REQUESTS: &str =
    "DELETE FROM eval_requests WHERE model = $1 AND version = $2 AND seq <= $3";

// ---- the cluster: mode, leases, replicas -------------------------------------------------

pub const PAUSED: &str = "SELECT value FROM settings WHERE key = 'paused'";
pub const SET_PAUSED: &str = "INSERT INTO settings (key, value) VALUES ('paused', $1)
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";
/// One statement: the row lock of the upsert serialises claimers, and the WHERE lets only a
/// lease that ran out (or was released, 0) change hands. Returns the token and the claim's
/// time.
pub const CLAIM: &str = "INSERT INTO leases (kind, name, owner, token, expires_at)
     VALUES ($1, $2, $3, 1, {now} + $4)
     ON CONFLICT (kind, name) DO UPDATE
         SET owner = EXCLUDED.owner, token = leases.token + 1, expires_at = EXCLUDED.expires_at
         WHERE leases.expires_at <= {now}
     RETURNING token, expires_at - $4";
pub const RENEW: &str = "UPDATE leases SET expires_at = {now} + $5
     WHERE kind = $1 AND name = $2 AND owner = $3 AND token = $4 AND expires_at > {now}";
pub const HOLDS: &str = "SELECT 1 FROM leases
     WHERE kind = $1 AND name = $2 AND owner = $3 AND token = $4 AND expires_at > {now} + $5";
/// The token stays, so the next claim's is larger.
pub const RELEASE: &str = "UPDATE leases SET expires_at = 0
     WHERE kind = $1 AND name = $2 AND owner = $3 AND token = $4";
/// A model lease that ran out unreleased, or a running evaluation with no live lease.
pub const ORPHANS: &str = "SELECT name FROM leases
     WHERE kind = 'model' AND expires_at > 0 AND expires_at <= {now}
     UNION
     SELECT DISTINCT model FROM evaluations e WHERE status = 'running' AND NOT EXISTS (
         SELECT 1 FROM leases l
         WHERE l.kind = 'model' AND l.name = e.model AND l.expires_at > {now})";
pub const HEARTBEAT: &str =
    "INSERT INTO replicas (id, started_at, last_seen, queue_depth, in_flight)
     VALUES ($1, $2, {now}, $3, $4)
     ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen,
         queue_depth = EXCLUDED.queue_depth, in_flight = EXCLUDED.in_flight";
/// Replicas gone for a day are history, not cluster.
pub const FORGET_REPLICAS: &str = "DELETE FROM replicas WHERE last_seen < {now} - 86400000";
/// Read by [`super::replica_row`].
pub const REPLICAS: &str = "SELECT id, started_at, last_seen, queue_depth, in_flight
     FROM replicas WHERE last_seen >= {now} - $1 ORDER BY id";
