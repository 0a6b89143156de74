//! Leader election through a `coordination.k8s.io/v1` Lease. Writes carry the Lease's
//! `resourceVersion`, so two candidates that race for it cannot both win: the loser
//! gets a conflict and stays standby.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate (pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews and a standby retries.
    pub retry: Duration,
}

/// What to do with the Lease as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStep {
    /// No Lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Held by nobody, or expired: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// Decides the next step from the observed Lease. Pure.
pub fn lease_step(lease: Option<&Lease>, me: &str, now: Timestamp) -> LeaseStep {
    let Some(lease) = lease else {
        return LeaseStep::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => LeaseStep::Renew,
        None | Some("") => LeaseStep::TakeOver,
        Some(_) => {
            let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let last = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
            match last {
                Some(t) if t + SignedDuration::from_secs(seconds) > now => LeaseStep::Wait,
                _ => LeaseStep::TakeOver,
            }
        }
    }
}

/// One candidate for the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    settings: LeaseSettings,
}

impl LeaseLock {
    /// A candidate.
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        LeaseLock {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: i32::try_from(self.settings.duration.as_secs()).ok(),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Tries once to acquire or renew; true when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|e| Error::Lease(format!("cannot read Lease: {e}")))?;
        let step = lease_step(current.as_ref(), &self.settings.identity, now);
        let result = match (step, current) {
            (LeaseStep::Wait, _) => return Ok(false),
            (LeaseStep::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (step, Some(mut lease)) => {
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if step == LeaseStep::Renew {
                    self.spec(now, old.acquire_time, transitions)
                } else {
                    info!(previous = ?old.holder_identity, "taking over the Lease");
                    self.spec(now, None, transitions + 1)
                });
                // `lease` still carries the resourceVersion we read: a concurrent
                // writer makes this fail with 409 instead of both winning.
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::Lease(format!("cannot write Lease: {e}"))),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.settings.name, identity = %self.settings.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.settings.retry).await;
        }
    }

    /// Gives the Lease up (on a clean stop) so that a standby takes over at once
    /// rather than after the lease expires.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!("released the Lease"),
            Err(e) => warn!(error = %e, "cannot release the Lease"),
        }
    }

    /// Renews until a renewal fails for longer than the lease lasts; returns then
    /// (leadership lost: the caller stops the controller).
    pub async fn keep(&self) {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => {
                    warn!("the Lease is held by another candidate");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "cannot renew the Lease");
                    if last_ok.elapsed() >= self.settings.duration {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[tokio::test]
    async fn acquire_creates_renews_and_loses_races() {
        use crate::fixtures::context;
        use http::Method;
        use serde_json::json;
        let (ctx, mut api) = context(vec![], vec![]);
        let lock = LeaseLock::new(
            ctx.client.clone(),
            LeaseSettings {
                name: "lapidary-operator".into(),
                namespace: "ops".into(),
                identity: "me".into(),
                duration: Duration::from_secs(15),
                retry: Duration::from_millis(10),
            },
        );
        let path = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
        let not_found = |_: &serde_json::Value| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
        let conflict = |_: &serde_json::Value| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409});
        let verifier = async move {
            // 1: no Lease: created, held by us.
            api.expect(Method::GET, &format!("{path}/lapidary-operator"), not_found)
                .await;
            let created = api.expect(Method::POST, path, |b| b.clone()).await;
            assert_eq!(created.body["spec"]["holderIdentity"], "me");
            // 2: held by us: renewed with the resourceVersion read.
            let mut ours = created.body.clone();
            ours["metadata"]["resourceVersion"] = json!("7");
            let ours2 = ours.clone();
            api.expect(
                Method::GET,
                &format!("{path}/lapidary-operator"),
                move |_| ours2,
            )
            .await;
            let renewed = api
                .expect(Method::PUT, &format!("{path}/lapidary-operator"), |b| {
                    b.clone()
                })
                .await;
            assert_eq!(renewed.body["metadata"]["resourceVersion"], "7");
            // 3: someone else renewed just now: we wait, no write.
            let mut theirs = ours.clone();
            theirs["spec"]["holderIdentity"] = json!("other");
            theirs["spec"]["renewTime"] = json!(Timestamp::now().to_string());
            api.expect(
                Method::GET,
                &format!("{path}/lapidary-operator"),
                move |_| theirs,
            )
            .await;
            // 4: expired, but another candidate wins the race: 409, not leader.
            let mut stale = ours.clone();
            stale["spec"]["holderIdentity"] = json!("other");
            stale["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
            api.expect(
                Method::GET,
                &format!("{path}/lapidary-operator"),
                move |_| stale,
            )
            .await;
            let took = api
                .expect(Method::PUT, &format!("{path}/lapidary-operator"), conflict)
                .await;
            assert_eq!(took.body["spec"]["leaseTransitions"], 1);
        };
        let candidate = async {
            assert!(lock.try_acquire_or_renew().await.unwrap());
            assert!(lock.try_acquire_or_renew().await.unwrap());
            assert!(!lock.try_acquire_or_renew().await.unwrap());
            assert!(!lock.try_acquire_or_renew().await.unwrap());
        };
        tokio::join!(verifier, candidate);
    }

    #[test]
    fn steps() {
        let now = Timestamp::from_second(2_000_000_000).unwrap();
        let recent = now - SignedDuration::from_secs(5);
        let old = now - SignedDuration::from_secs(60);
        assert_eq!(lease_step(None, "me", now), LeaseStep::Create);
        assert_eq!(
            lease_step(Some(&lease(Some("me"), old)), "me", now),
            LeaseStep::Renew
        );
        assert_eq!(
            lease_step(Some(&lease(Some("other"), recent)), "me", now),
            LeaseStep::Wait
        );
        assert_eq!(
            lease_step(Some(&lease(Some("other"), old)), "me", now),
            LeaseStep::TakeOver
        );
        assert_eq!(
            lease_step(Some(&lease(None, recent)), "me", now),
            LeaseStep::TakeOver
        );
    }
}
