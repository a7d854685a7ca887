//! Client errors.

use fanlog_protocol::frame::ErrorCode;

/// What went wrong in a client operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker refused the request.
    #[error("broker refused the request ({code:?}): {message}")]
    Server {
        /// The protocol error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The peer sent bytes that are not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Connecting failed (and will not be retried for this call).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The client was shut down.
    #[error("client is closed")]
    Closed,
}

impl ClientError {
    /// The protocol error code, when the broker refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(feature = "embedded")]
impl From<fanlog_broker::BrokerError> for ClientError {
    fn from(e: fanlog_broker::BrokerError) -> Self {
        ClientError::Server {
            code: e.code(),
            message: e.to_string(),
        }
    }
}
