use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shoal_actors::proposer::ProposeError;
use shoal_core::state::ApplyError;

use crate::cluster::wire::Refusal;
use crate::runtime::NodeError;

/// An error as the Docker Engine API reports it: a status and `{"message": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(bollard::models::ErrorResponse {
                message: self.message,
            }),
        )
            .into_response()
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        let status = match &e {
            ProposeError::Rejected(
                ApplyError::ServiceNameConflict(_)
                | ApplyError::ObjectExists(..)
                | ApplyError::NetworkExists(_)
                | ApplyError::OutOfSequence(_),
            ) => StatusCode::CONFLICT,
            ProposeError::Rejected(
                ApplyError::ObjectNotFound(..) | ApplyError::NetworkNotFound(_),
            ) => StatusCode::NOT_FOUND,
            ProposeError::Rejected(
                ApplyError::NetworkInUse { .. } | ApplyError::NetworkHasEndpoints(_),
            ) => StatusCode::FORBIDDEN,
            ProposeError::Rejected(ApplyError::AlreadyInitialized) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProposeError::Rejected(
                ApplyError::ServiceNotFound(_) | ApplyError::NodeNotFound(_),
            ) => StatusCode::NOT_FOUND,
            ProposeError::Rejected(_) | ProposeError::Codec(_) => StatusCode::BAD_REQUEST,
            ProposeError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProposeError::NotLeader { .. } | ProposeError::NoLeader | ProposeError::Superseded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// A peer's refusal, as the Engine API would answer it.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match &r {
            Refusal::Rejected(a) => return ProposeError::Rejected(a.clone()).into(),
            Refusal::NotLeader { .. } | Refusal::NoLeader(_) | Refusal::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::Precondition(_) => StatusCode::PRECONDITION_FAILED,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Forbidden(_) | Refusal::Superseded => StatusCode::FORBIDDEN,
            Refusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, r.to_string())
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Propose(p) => p.into(),
            NodeError::AlreadyInSwarm | NodeError::NotManager | NodeError::WorkerNode => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            NodeError::NotInSwarm => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            NodeError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            NodeError::Precondition(_) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            NodeError::BadToken(_) | NodeError::Addr(_) | NodeError::Backup(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            NodeError::Remote(r) => r.into(),
            NodeError::FormatMismatch { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            NodeError::Locked | NodeError::CannotPersist(_) | NodeError::Outdated(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            NodeError::Unreachable(..) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}
