//! Pictures in an S3-compatible store, through aws-sdk-s3. The endpoint can be overridden
//! and path-style addressing forced, so MinIO, Ceph, moto and the like work as well as S3;
//! credentials come from the configuration or the standard AWS chain.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use futures::future::BoxFuture;

use super::{BlobError, BlobStore, Listed};

/// How long a presigned URL works.
const PRESIGNED_FOR: Duration = Duration::from_secs(300);
/// A request to the store that takes longer than this is a failure (503), not a hang.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The circuit breaker's limit on a whole write, read or delete, reading the body
/// included (which [`TIMEOUT`] does not cover): a backstop a little above it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: String,
    /// Access key id and secret; `None` uses the standard AWS chain.
    pub credentials: Option<(String, String)>,
    pub path_style: bool,
    pub presign: bool,
}

pub struct S3 {
    client: Client,
    bucket: String,
    presign: bool,
}

impl S3 {
    pub async fn new(settings: S3Settings) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(TIMEOUT)
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2));
        if let Some((id, secret)) = &settings.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id, secret, None, None, "minitter",
            ));
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.path_style)
            .build();
        Self {
            client: Client::from_conf(config),
            bucket: settings.bucket,
            presign: settings.presign,
        }
    }
}

impl BlobStore for S3 {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .context("S3 PutObject")?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            let result = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
            let output = match result {
                Ok(output) => output,
                Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(error) => {
                    return Err(anyhow::Error::from(error).context("S3 GetObject").into());
                }
            };
            let bytes = output
                .body
                .collect()
                .await
                .context("reading an S3 object")?;
            Ok(Some(bytes.into_bytes().to_vec()))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .context("S3 DeleteObject")?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, BlobError>> {
        Box::pin(async move {
            let mut found = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.context("S3 ListObjectsV2")?;
                for object in page.contents() {
                    let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                        continue;
                    };
                    let modified =
                        SystemTime::try_from(*modified).unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push(Listed {
                        key: key.to_owned(),
                        modified,
                    });
                }
            }
            Ok(found)
        })
    }

    fn presigned_get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BlobError>> {
        Box::pin(async move {
            if !self.presign {
                return Ok(None);
            }
            let config =
                PresigningConfig::expires_in(PRESIGNED_FOR).context("presigning settings")?;
            let request = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(config)
                .await
                .context("presigning")?;
            Ok(Some(request.uri().to_owned()))
        })
    }
}
