//! The generated client's hooks: every request of every operation passes through here.
//!
//! codegen generates the client so that this implementation is required (progenitor's
//! `HooksMode::Expected`): without it the crate does not compile, so there is no way to
//! build a client that sends without credentials or retries. `pre` adds the client's
//! bearer token; `exec` sends with retries ([`crate::retry::send`]), given what the
//! document says about the operation (`operations::find`).

use progenitor_client::{ClientHooks, ClientInfo, OperationInfo};
use reqwest::header::AUTHORIZATION;

use crate::{Client, ClientConfig, Error, operations, retry};

impl ClientHooks<ClientConfig> for Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), Error<E>> {
        if let Some(authorization) = &self.inner().authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        Ok(())
    }

    async fn exec(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        let operation = operations::find(info.operation_id);
        retry::send(
            self.client(),
            request,
            operation,
            &self.inner().retry_policy,
        )
        .await
    }
}
