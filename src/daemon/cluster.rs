//! This replica among others sharing one store: its identity, the leases it takes (one per
//! model while it reconciles, one for the poll), the fencing of its MLflow writes, and the
//! background round that keeps the cluster honest (heartbeat, orphans, store health).
//!
//! A lease is a row: owner, expiry, and a token that grows with every claim. The holder
//! renews it while it works; before each MLflow write it checks, in the store, that the row
//! still names it with the same token and time to spare. A replica that was paused, frozen
//! or cut off past its expiry therefore finds its token stale and writes nothing. What stays
//! open is a write already checked and sent that MLflow applies more than the margin later;
//! MLflow has no conditional writes, so no client can close that (ARCHITECTURE.md).
//!
//! With one replica (SQLite) the same rules run, uncontended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mlflow::WriteGuard;
use crate::store::{LeaseId, LeaseKind, ReplicaRow, Store, StoreError};

/// The cluster's poll runs on the holder of this singleton lease.
const POLL: &str = "poll";

pub struct Cluster {
    store: Store,
    replica: String,
    lease: Duration,
    started_at: String,
    /// The poll lease, while this replica holds it.
    poll: Mutex<Option<LeaseId>>,
    /// The last store round trip of the background round: `None` = fine.
    store_error: Mutex<Option<String>>,
}

impl Cluster {
    pub fn new(store: Store, lease: Duration) -> Cluster {
        Cluster {
            store,
            replica: replica_id(),
            lease,
            started_at: crate::evaluation::now_rfc3339(),
            poll: Mutex::new(None),
            store_error: Mutex::new(None),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Replicas heard from within this long count as alive on `/status`.
    pub fn heartbeat_window(&self) -> Duration {
        self.lease * 2
    }

    /// How often the background round runs (and a held lease is renewed).
    fn beat(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(200))
    }

    /// Time that must be left on a lease for a write to go ahead: the write's own flight.
    fn margin(&self) -> Duration {
        self.lease / 4
    }

    /// Take `model` for a reconcile; `None` if another replica holds it.
    pub async fn claim(&self, model: &str) -> Result<Option<Held>, StoreError> {
        let Some(id) = self
            .store
            .claim(LeaseKind::Model, model, &self.replica, self.lease)
            .await?
        else {
            return Ok(None);
        };
        // Whoever ran these is gone: the lease was free.
        let n = self.store.interrupt_running(model).await?;
        if n > 0 {
            tracing::info!(model, "redoing an evaluation its replica did not finish");
        }
        Ok(Some(Held::start(
            self.store.clone(),
            id,
            self.lease,
            self.beat(),
            self.margin(),
        )))
    }

    /// Whether this replica runs this tick's poll: it renews the poll lease it holds, or
    /// claims it if nobody does. Exactly one replica holds it at a time; another takes over
    /// within one lease period when the holder dies.
    pub async fn poll_turn(&self) -> Result<bool, StoreError> {
        let held = self.poll.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(id) = held {
            if self.store.renew(&id, self.lease).await? {
                return Ok(true);
            }
            tracing::info!("the poll lease passed to another replica");
        }
        let claimed = self
            .store
            .claim(LeaseKind::Singleton, POLL, &self.replica, self.lease)
            .await?;
        let mine = claimed.is_some();
        *self.poll.lock().unwrap_or_else(|p| p.into_inner()) = claimed;
        Ok(mine)
    }

    /// Keep the poll lease alive between ticks longer than a lease period.
    async fn renew_poll(&self) {
        let held = self.poll.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(id) = held
            && !matches!(self.store.renew(&id, self.lease).await, Ok(true))
        {
            *self.poll.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Give the poll lease up at shutdown, so another replica polls at its next tick.
    pub async fn release_poll(&self) {
        let held = self.poll.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(id) = held {
            let _ = self.store.release(&id).await;
        }
    }

    /// The store's health as the background round last saw it (`/readyz`).
    pub fn store_error(&self) -> Option<String> {
        self.store_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One background round: announce this replica, and return the work others dropped
    /// (models of dead holders, queue entries nobody served for a lease period, analyses
    /// with a round due or an outcome not yet acted on).
    pub async fn round(&self, queue_depth: usize, in_flight: usize) -> Vec<String> {
        let me = ReplicaRow {
            id: self.replica.clone(),
            started_at: self.started_at.clone(),
            last_seen: String::new(),
            queue_depth: queue_depth as i64,
            in_flight: in_flight as i64,
        };
        let old = crate::store::now_ms() - self.lease.as_millis() as i64;
        let result = async {
            self.store.heartbeat(&me).await?;
            let mut work = self.store.orphans().await?;
            work.extend(self.store.queued(old).await?);
            // Analyses with a step to take (a round due, an outcome to act on): a timer that
            // died with its replica, or a retry that gave up, is not needed for it to happen.
            work.extend(self.store.analyses_due().await?);
            Ok::<_, StoreError>(work)
        }
        .await;
        self.renew_poll().await;
        let mut error = self.store_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(work) => {
                if error.take().is_some() {
                    tracing::info!("the store answers again");
                }
                work
            }
            Err(e) => {
                if error.is_none() {
                    tracing::warn!(error = %e, "the store does not answer");
                }
                *error = Some(e.to_string());
                Vec::new()
            }
        }
    }

    pub fn round_every(&self) -> Duration {
        self.beat()
    }
}

/// A model's lease, held while its reconcile runs: renewed in the background, checked before
/// every MLflow write, released at the end (dropping it stops the renewal; the lease then
/// runs out on its own).
pub struct Held {
    guard: Arc<Fence>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Held {
    fn start(store: Store, id: LeaseId, ttl: Duration, every: Duration, margin: Duration) -> Held {
        let guard = Arc::new(Fence {
            store: store.clone(),
            id,
            margin,
            lost: AtomicBool::new(false),
        });
        let g = guard.clone();
        let renewal = tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                match store.renew(&g.id, ttl).await {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => break,
                    // A store that does not answer: the lease may run out meanwhile.
                    Err(_) if renewed.elapsed() < ttl => continue,
                    Err(_) => break,
                }
            }
            g.lost.store(true, Ordering::SeqCst);
            tracing::warn!(model = %g.id.name, "lease on the model lost; making no more writes");
        });
        Held { guard, renewal }
    }

    /// The check every MLflow write of this reconcile passes first.
    pub fn guard(&self) -> Arc<dyn WriteGuard> {
        self.guard.clone()
    }

    /// When the claim was made (store clock): queue entries up to then are served.
    pub fn claimed_at(&self) -> i64 {
        self.guard.id.claimed_at
    }

    pub async fn release(self) {
        self.renewal.abort();
        if let Err(e) = self.guard.store.release(&self.guard.id).await {
            tracing::warn!(model = %self.guard.id.name, error = %e, "could not release the lease; it runs out on its own");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

struct Fence {
    store: Store,
    id: LeaseId,
    margin: Duration,
    lost: AtomicBool,
}

#[async_trait::async_trait]
impl WriteGuard for Fence {
    async fn check(&self) -> Result<(), String> {
        let model = &self.id.name;
        if self.lost.load(Ordering::SeqCst) {
            return Err(format!("this replica's lease on {model:?} is lost"));
        }
        match self.store.holds(&self.id, self.margin).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(format!(
                    "this replica's lease on {model:?} ran out or passed to another replica (token {})",
                    self.id.token
                ))
            }
            Err(e) => Err(format!("the lease on {model:?} cannot be verified: {e}")),
        }
    }
}

/// `host-pid-xxxx`: unique per process run, readable on `/status`.
fn replica_id() -> String {
    let host = hostname().unwrap_or_else(|| "stagegate".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}
