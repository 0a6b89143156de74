//! The operator's errors.

use thiserror::Error;

/// Everything that can go wrong in the operator.
#[derive(Debug, Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    /// A rendered object could not be (de)serialized.
    #[error("serialization failed: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The run's spec cannot be run; waits for the user to change it.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The stored IntegrationRun does not match the operator's types (edited by hand,
    /// or written by another version); it is skipped without stopping the watch.
    #[error("the IntegrationRun cannot be read: {0}")]
    InvalidObject(String),
    /// The run lacks a field the API server always sets (name, namespace, uid).
    #[error("the IntegrationRun lacks {0}")]
    MissingField(&'static str),
    /// Something a child carries does not follow the pod contract.
    #[error("contract violation: {0}")]
    Contract(String),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(String),
}

impl Error {
    /// A fixed label per variant, for metrics (never the message: unbounded values).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::InvalidObject(_) => "invalid_object",
            Error::MissingField(_) => "missing_field",
            Error::Contract(_) => "contract",
            Error::Lease(_) => "lease",
        }
    }

    /// True when retrying cannot help until the user changes the run.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec(_) | Error::InvalidObject(_) | Error::MissingField(_)
        )
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_static_and_permanence_is_known() {
        let e = Error::InvalidSpec("cycle a -> b -> a".into());
        assert_eq!(e.metric_label(), "invalid_spec");
        assert!(e.is_permanent());
        let t = Error::Contract("x".into());
        assert_eq!(t.metric_label(), "contract");
        assert!(!t.is_permanent());
    }
}
