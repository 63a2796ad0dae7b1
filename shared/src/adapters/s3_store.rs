//! The batch bucket on S3.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use domain::error::StoreError;
use domain::ports::{ObjectInfo, ObjectStore, ObjectVersion};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// Path-style addressing works with S3 and with local S3 endpoints alike.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(config), bucket)
    }
}

fn failed(error: impl std::error::Error) -> StoreError {
    StoreError(DisplayErrorContext(error).to_string())
}

impl S3Store {
    /// HEAD of the object, or of one version: a version id names it; an ETag must still be
    /// the object's (`If-Match`; 412 otherwise).
    async fn head(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<Option<ObjectInfo>, StoreError> {
        let (version_id, if_match) = pin(version);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id)
            .set_if_match(if_match)
            .send()
            .await
        {
            Ok(head) => Ok(Some(ObjectInfo {
                size: head
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                metadata: head.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            // A version id that is gone, or an ETag that is no longer the object's.
            Err(e)
                if version.is_some()
                    && e.raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 400 | 404 | 412)) =>
            {
                Ok(None)
            }
            Err(e) => Err(failed(e)),
        }
    }

    async fn range(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, StoreError> {
        if end <= start {
            return Ok(Vec::new());
        }
        let (version_id, if_match) = pin(version);
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id)
            .set_if_match(if_match)
            .range(format!("bytes={start}-{}", end - 1))
            .send()
            .await
            .map_err(failed)?;
        let bytes = output.body.collect().await.map_err(failed)?;
        Ok(bytes.into_bytes().to_vec())
    }
}

/// The request fields that read one version: `VersionId`, or `If-Match` with the ETag.
fn pin(version: Option<&ObjectVersion>) -> (Option<String>, Option<String>) {
    match version {
        None => (None, None),
        Some(ObjectVersion::Id(id)) => (Some(id.clone()), None),
        // S3 events give the ETag bare; If-Match takes it quoted.
        Some(ObjectVersion::ETag(etag)) if etag.starts_with('"') => (None, Some(etag.clone())),
        Some(ObjectVersion::ETag(etag)) => (None, Some(format!("\"{etag}\""))),
    }
}

impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        let bytes = output.body.collect().await.map_err(failed)?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn info(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.head(key, None).await
    }

    async fn info_at(
        &self,
        key: &str,
        version: &ObjectVersion,
    ) -> Result<Option<ObjectInfo>, StoreError> {
        self.head(key, Some(version)).await
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        self.range(key, None, start, end).await
    }

    async fn get_range_at(
        &self,
        key: &str,
        version: &ObjectVersion,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.range(key, Some(version), start, end).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(failed)?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn presign_get(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<String, StoreError> {
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| StoreError(format!("cannot presign for {expires_in:?}: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(failed)?;
        Ok(request.uri().to_owned())
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::head_object::HeadObjectOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    #[tokio::test]
    async fn a_pinned_read_names_the_version_id_or_the_etag_it_must_still_be() {
        let head = mock!(aws_sdk_s3::Client::head_object)
            .match_requests(|r| r.version_id() == Some("v7") && r.if_match().is_none())
            .then_output(|| HeadObjectOutput::builder().content_length(12).build());
        let range = mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| {
                r.if_match() == Some("\"abc\"")
                    && r.version_id().is_none()
                    && r.range() == Some("bytes=0-11")
            })
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"{\"a\":1}\n{}\n\n"))
                    .build()
            });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&head, &range]);
        let store = S3Store::new(client, "bucket");
        let info = store
            .info_at("k", &ObjectVersion::Id("v7".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.size, 12);
        let bytes = store
            .get_range_at("k", &ObjectVersion::ETag("abc".into()), 0, 12)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 12);
        assert_eq!((head.num_calls(), range.num_calls()), (1, 1));
    }
}
