//! `health` tag: liveness and readiness probes. Readiness is refused while the database
//! does not answer, and from the moment the instance is told to stop (SIGTERM or SIGINT,
//! see [`crate::startup`]): it keeps serving for the drain period, but a load balancer
//! must stop sending it requests.

use super::Handlers;
use crate::generated::HealthApi;
use std::time::Duration;

use poem::http::StatusCode;

use super::request_id;
use crate::generated::types::ProblemCode;
use crate::generated::types::{HealthState, HealthStatus};
use crate::generated::{GetHealthResponse, GetReadinessResponse};
use crate::http::error::{RETRY_AFTER_SECONDS, Result, problem};

/// A readiness check that takes longer than this counts as a failure.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

impl HealthApi for Handlers {
    async fn get_health(&self, _request: &poem::Request) -> Result<GetHealthResponse> {
        Ok(GetHealthResponse::Ok(HealthStatus {
            status: HealthState::Ok,
        }))
    }

    async fn get_readiness(&self, request: &poem::Request) -> Result<GetReadinessResponse> {
        let state = &*self.state;
        let detail = if state.draining.is_started() {
            "This instance is shutting down.".to_owned()
        } else {
            let ping = tokio::time::timeout(READINESS_TIMEOUT, state.store.ping()).await;
            if let Ok(Ok(())) = ping {
                return Ok(GetReadinessResponse::Ok(HealthStatus {
                    status: HealthState::Ok,
                }));
            }
            tracing::warn!(?ping, "readiness check failed");
            "The database is unavailable.".to_owned()
        };
        let status = StatusCode::SERVICE_UNAVAILABLE;
        Ok(GetReadinessResponse::ServiceUnavailable {
            body: problem(
                status,
                ProblemCode::Unavailable,
                detail,
                &request_id(request),
            ),
            retry_after: RETRY_AFTER_SECONDS.try_into().unwrap_or(1),
        })
    }
}
