//! Every [`Backend`] operation, once, for every [`Sql`] backend: which statement, with which
//! parameters, read how.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;

use super::statements as st;
use super::{
    Columns, Param, Sql, analysis_row, audit_row, evaluation_row, int, model_row, replica_row,
    text, totals_row,
};
use crate::store::{
    AnalysisRow, AuditRow, Backend, EvaluationRow, FinishedEvaluation, LeaseId, LeaseKind,
    ModelRow, NewAnalysis, ReplicaRow, StoreError, Totals, ms, unix_ms,
};

/// The first row, if any.
fn first<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

fn lease_params(l: &LeaseId) -> Vec<Param> {
    vec![
        l.kind.as_str().into(),
        (&l.name).into(),
        (&l.owner).into(),
        l.token.into(),
    ]
}

#[async_trait]
impl<D: Sql> Backend for D {
    fn describe(&self) -> String {
        Sql::describe(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query("SELECT 1", vec![], |_| Ok(())).await.map(drop)
    }

    // ---- webhook deliveries -------------------------------------------------------------

    async fn record_delivery(
        &self,
        source: &str,
        id: &str,
        event: &str,
        model: &str,
    ) -> Result<bool, StoreError> {
        let params = vec![source.into(), id.into(), event.into(), model.into()];
        Ok(self.execute(st::RECORD_DELIVERY, params).await? == 1)
    }

    async fn prune_deliveries(&self, retention: Duration) -> Result<usize, StoreError> {
        let n = self
            .execute(st::PRUNE_DELIVERIES, vec![ms(retention).into()])
            .await?;
        Ok(n as usize)
    }

    async fn delivery_count(&self) -> Result<i64, StoreError> {
        let rows = self.query(st::DELIVERY_COUNT, vec![], int).await?;
        Ok(first(rows).unwrap_or(0))
    }

    // ---- evaluations --------------------------------------------------------------------

    async fn begin_evaluation(
        &self,
        model: &str,
        version: &str,
        policy: &str,
        digest: &str,
        trigger: &str,
    ) -> Result<i64, StoreError> {
        let params = vec![
            model.into(),
            version.into(),
            policy.into(),
            digest.into(),
            trigger.into(),
        ];
        let rows = self.query(st::BEGIN_EVALUATION, params, int).await?;
        first(rows).ok_or_else(|| StoreError::Task("INSERT … RETURNING gave no row".into()))
    }

    async fn finish_evaluation(
        &self,
        id: i64,
        done: &FinishedEvaluation,
    ) -> Result<(), StoreError> {
        let (gates, serving) = done.columns();
        let params = vec![
            id.into(),
            (&done.verdict).into(),
            Param::Text(gates),
            done.champion.clone().into(),
            serving.into(),
        ];
        self.execute(st::FINISH_EVALUATION, params).await.map(drop)
    }

    async fn fail_evaluation(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let params = vec![id.into(), error.into()];
        self.execute(st::FAIL_EVALUATION, params).await.map(drop)
    }

    async fn set_action(
        &self,
        model: &str,
        version: &str,
        verdict: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError> {
        let params = vec![model.into(), version.into(), verdict.into(), action.into()];
        self.execute(st::SET_ACTION, params).await.map(drop)
    }

    async fn interrupt_running(&self, model: &str) -> Result<usize, StoreError> {
        let n = self
            .execute(st::INTERRUPT_RUNNING, vec![model.into()])
            .await?;
        Ok(n as usize)
    }

    async fn evaluations_before(
        &self,
        model: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        let params = vec![model.into(), before.into(), (limit as i64).into()];
        self.query(st::EVALUATIONS_BEFORE, params, evaluation_row)
            .await
    }

    async fn evaluation(&self, id: i64) -> Result<Option<EvaluationRow>, StoreError> {
        let rows = self
            .query(st::EVALUATION, vec![id.into()], evaluation_row)
            .await?;
        Ok(first(rows))
    }

    async fn totals(&self) -> Result<Totals, StoreError> {
        let rows = self.query(st::TOTALS, vec![], totals_row).await?;
        Ok(first(rows).unwrap_or_default())
    }

    async fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        self.query(st::MODELS, vec![], model_row).await
    }

    async fn latest_per_model(&self) -> Result<Vec<EvaluationRow>, StoreError> {
        self.query(st::LATEST_PER_MODEL, vec![], evaluation_row)
            .await
    }

    async fn evaluation_count(&self, model: &str) -> Result<i64, StoreError> {
        let rows = self
            .query(st::EVALUATION_COUNT, vec![model.into()], int)
            .await?;
        Ok(first(rows).unwrap_or(0))
    }

    async fn latest_per_version(
        &self,
        model: &str,
        versions: usize,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        let params = vec![model.into(), (versions as i64).into()];
        let mut rows = self
            .query(st::LATEST_PER_VERSION, params, evaluation_row)
            .await?;
        rows.reverse();
        Ok(rows)
    }

    // ---- audit --------------------------------------------------------------------------

    async fn audit(
        &self,
        model: &str,
        version: Option<&str>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let params = vec![model.into(), version.into(), action.into(), detail.into()];
        self.execute(st::AUDIT, params).await.map(drop)
    }

    async fn audit_absent(
        &self,
        model: &str,
        version: &str,
        action: &str,
        detail: &str,
        same_detail: bool,
    ) -> Result<bool, StoreError> {
        let key = format!("{model}/{version}/{action}");
        let params = vec![
            model.into(),
            version.into(),
            action.into(),
            detail.into(),
            same_detail.into(),
        ];
        Ok(self.execute_alone(key, st::AUDIT_ABSENT, params).await? > 0)
    }

    async fn last_audit_id(&self) -> Result<i64, StoreError> {
        let rows = self.query(st::LAST_AUDIT_ID, vec![], int).await?;
        Ok(first(rows).unwrap_or(0))
    }

    async fn audit_log(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let params = vec![model.into(), (limit as i64).into()];
        self.query(st::AUDIT_LOG, params, audit_row).await
    }

    // ---- post-promotion analyses ----------------------------------------------------------

    async fn begin_analysis(&self, a: &NewAnalysis) -> Result<Option<i64>, StoreError> {
        let params = vec![
            (&a.model).into(),
            (&a.version).into(),
            a.previous.clone().into(),
            (&a.target).into(),
            (&a.policy).into(),
            ms(a.first_in).into(),
        ];
        Ok(first(self.query(st::BEGIN_ANALYSIS, params, int).await?))
    }

    async fn running_analyses(&self) -> Result<Vec<AnalysisRow>, StoreError> {
        self.query(st::RUNNING_ANALYSES, vec![], analysis_row).await
    }

    async fn analysis(&self, id: i64) -> Result<Option<AnalysisRow>, StoreError> {
        Ok(first(
            self.query(st::ANALYSIS, vec![id.into()], analysis_row)
                .await?,
        ))
    }

    async fn analyses(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AnalysisRow>, StoreError> {
        let params = vec![model.into(), (limit as i64).into()];
        self.query(st::ANALYSES, params, analysis_row).await
    }

    async fn record_round(
        &self,
        id: i64,
        step: i64,
        measurements: &str,
        next_in: Duration,
    ) -> Result<bool, StoreError> {
        let params = vec![
            id.into(),
            step.into(),
            measurements.into(),
            ms(next_in).into(),
        ];
        Ok(self.execute(st::RECORD_ROUND, params).await? == 1)
    }

    async fn finish_analysis(
        &self,
        id: i64,
        status: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let params = vec![id.into(), status.into(), reason.into()];
        Ok(self.execute(st::FINISH_ANALYSIS, params).await? == 1)
    }

    async fn settle_analysis(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.execute(st::SETTLE_ANALYSIS, vec![id.into()]).await? == 1)
    }

    async fn analyses_due(&self) -> Result<Vec<String>, StoreError> {
        self.query(st::ANALYSES_DUE, vec![], text).await
    }

    // ---- the queue and re-evaluation requests --------------------------------------------

    async fn queue_push(&self, model: &str) -> Result<(), StoreError> {
        self.execute(st::QUEUE_PUSH, vec![model.into()])
            .await
            .map(drop)
    }

    async fn queue_remove(&self, model: &str, since: i64) -> Result<(), StoreError> {
        let params = vec![model.into(), since.into()];
        self.execute(st::QUEUE_REMOVE, params).await.map(drop)
    }

    async fn queued(&self, before: i64) -> Result<Vec<String>, StoreError> {
        self.query(st::QUEUED, vec![before.into()], text).await
    }

    async fn request_evaluation(&self, model: &str, version: &str) -> Result<(), StoreError> {
        let params = vec![model.into(), version.into()];
        self.execute(st::REQUEST_EVALUATION, params).await.map(drop)
    }

    async fn requests(&self, model: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        let read = |r: &dyn Columns| Ok((r.text(0)?, r.int(1)?));
        let rows = self.query(st::REQUESTS, vec![model.into()], read).await?;
        Ok(rows.into_iter().collect())
    }

    async fn requested_models(&self) -> Result<BTreeSet<String>, StoreError> {
        let rows = self.query(st::REQUESTED_MODELS, vec![], text).await?;
        Ok(rows.into_iter().collect())
    }

    async fn clear_requests(
        &self,
        model: &str,
        version: &str,
        up_to: i64,
    ) -> Result<(), StoreError> {
        let params = vec![model.into(), version.into(), up_to.into()];
        self.execute(st::CLEAR_REQUESTS, params).await.map(drop)
    }

    // ---- the cluster: mode, leases, replicas ---------------------------------------------

    async fn paused(&self) -> Result<bool, StoreError> {
        let rows = self.query(st::PAUSED, vec![], text).await?;
        Ok(first(rows).as_deref() == Some("true"))
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        let params = vec![paused.to_string().as_str().into()];
        self.execute(st::SET_PAUSED, params).await.map(drop)
    }

    async fn claim(
        &self,
        kind: LeaseKind,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseId>, StoreError> {
        let params = vec![
            kind.as_str().into(),
            name.into(),
            owner.into(),
            ms(ttl).into(),
        ];
        let read = |r: &dyn Columns| Ok((r.int(0)?, r.int(1)?));
        let rows = self.query(st::CLAIM, params, read).await?;
        Ok(first(rows).map(|(token, claimed_at)| LeaseId {
            kind,
            name: name.to_string(),
            owner: owner.to_string(),
            token,
            claimed_at,
        }))
    }

    async fn renew(&self, lease: &LeaseId, ttl: Duration) -> Result<bool, StoreError> {
        let mut params = lease_params(lease);
        params.push(ms(ttl).into());
        Ok(self.execute(st::RENEW, params).await? == 1)
    }

    async fn holds(&self, lease: &LeaseId, margin: Duration) -> Result<bool, StoreError> {
        let mut params = lease_params(lease);
        params.push(ms(margin).into());
        Ok(!self.query(st::HOLDS, params, |_| Ok(())).await?.is_empty())
    }

    async fn release(&self, lease: &LeaseId) -> Result<(), StoreError> {
        self.execute(st::RELEASE, lease_params(lease))
            .await
            .map(drop)
    }

    async fn orphans(&self) -> Result<Vec<String>, StoreError> {
        self.query(st::ORPHANS, vec![], text).await
    }

    async fn heartbeat(&self, r: &ReplicaRow) -> Result<(), StoreError> {
        let params = vec![
            (&r.id).into(),
            unix_ms(&r.started_at).into(),
            r.queue_depth.into(),
            r.in_flight.into(),
        ];
        self.execute(st::HEARTBEAT, params).await?;
        self.execute(st::FORGET_REPLICAS, vec![]).await.map(drop)
    }

    async fn replicas(&self, within: Duration) -> Result<Vec<ReplicaRow>, StoreError> {
        self.query(st::REPLICAS, vec![ms(within).into()], replica_row)
            .await
    }
}
