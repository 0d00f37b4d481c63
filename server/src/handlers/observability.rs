//! `observability` tag: the Prometheus metrics (see [`crate::metrics`]).

use super::Handlers;
use crate::error::Result;
use crate::generated::{GetMetricsAuth, GetMetricsResponse, ObservabilityApi};

impl ObservabilityApi for Handlers {
    async fn get_metrics(
        &self,
        _request: &poem::Request,
        _operator: GetMetricsAuth<Self>,
    ) -> Result<GetMetricsResponse> {
        crate::metrics::pool_usage(self.state.store.pool_usage());
        // Metrics matter most when the database fails: without it, the lag is not updated
        // but the rest is still served.
        match self.state.store.outbox_backlog().await {
            Ok(backlog) => crate::metrics::outbox_backlog(&backlog),
            Err(error) => tracing::warn!(%error, "outbox lag not read for this scrape"),
        }
        Ok(GetMetricsResponse::Ok(
            crate::metrics::handle().render().into(),
        ))
    }
}
