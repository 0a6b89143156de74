//! Events a user sees with `kubectl describe integrationrun`. The reconciler decides
//! which to send (pure); [`publish`] sends them and only logs failures: a lost Event
//! must never stop a run.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

/// Most module-failure Events sent by one reconcile; the rest are counted in one more.
pub const MAX_MODULE_EVENTS: usize = 10;

/// One Event to send about the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// CamelCase action.
    pub action: &'static str,
    /// Human-readable note (at most 1 kB).
    pub note: String,
    /// A related pod, `(name, uid)`: also keeps Events about different modules apart
    /// (the recorder would otherwise fold them into one series).
    pub pod: Option<(String, String)>,
}

impl EventSpec {
    /// A Normal Event.
    pub fn normal(reason: &'static str, action: &'static str, note: String) -> Self {
        EventSpec {
            warning: false,
            reason,
            action,
            note,
            pod: None,
        }
    }

    /// A Warning Event.
    pub fn warning(reason: &'static str, action: &'static str, note: String) -> Self {
        EventSpec {
            warning: true,
            ..Self::normal(reason, action, note)
        }
    }
}

/// Sends `events` about the object `regarding`.
pub async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    namespace: &str,
    events: &[EventSpec],
) {
    for e in events {
        let secondary = e.pod.as_ref().map(|(name, uid)| ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            uid: Some(uid.clone()),
            ..ObjectReference::default()
        });
        let event = Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.to_owned(),
            note: Some(lapidary_api::contract::truncate_chars(&e.note, 900)),
            action: e.action.to_owned(),
            secondary,
        };
        if let Err(err) = recorder.publish(&event, regarding).await {
            tracing::warn!(reason = e.reason, error = %err, "could not publish Event");
        }
    }
}
