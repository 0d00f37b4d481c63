//! `observability` tag: the Prometheus metrics (see [`crate::infra::metrics`]).

use super::Handlers;
use crate::generated::{GetMetricsAuth, GetMetricsResponse, ObservabilityApi};
use crate::http::error::Result;

impl ObservabilityApi for Handlers {
    async fn get_metrics(
        &self,
        _request: &poem::Request,
        _operator: GetMetricsAuth<Self>,
    ) -> Result<GetMetricsResponse> {
        crate::infra::metrics::pool_usage(self.state.store.pool_usage());
        crate::infra::metrics::stream_sockets(self.state.realtime.connections());
        // Metrics matter most when the database fails: without it, the lag is not updated
        // but the rest is still served.
        match self.state.store.outbox_backlog().await {
            Ok(backlog) => crate::infra::metrics::outbox_backlog(&backlog),
            Err(error) => tracing::warn!(%error, "outbox lag not read for this scrape"),
        }
        match self.state.store.open_breakers(chrono::Utc::now()).await {
            Ok(open) => crate::infra::metrics::webhook_breakers_open(open),
            Err(error) => tracing::warn!(%error, "webhook breakers not read for this scrape"),
        }
        Ok(GetMetricsResponse::Ok(
            crate::infra::metrics::handle().render().into(),
        ))
    }
}
