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
        Ok(GetMetricsResponse::Ok(
            crate::metrics::handle().render().into(),
        ))
    }
}
