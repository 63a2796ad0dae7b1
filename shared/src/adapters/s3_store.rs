//! The batch bucket on S3.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use domain::error::StoreError;
use domain::ports::{ObjectInfo, ObjectStore, ObjectVersion, Upload, UploadedPart, MAX_PARTS};

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
        // One copy, not two: the aggregated segments become one buffer that the Vec takes over.
        Ok(Vec::from(bytes.into_bytes()))
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

    async fn create_upload(&self, key: &str) -> Result<Upload, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .send()
            .await
            .map_err(failed)?;
        let id = created
            .upload_id()
            .ok_or_else(|| StoreError(format!("S3 CreateMultipartUpload of {key}: no UploadId")))?;
        Ok(Upload {
            key: key.to_owned(),
            id: id.to_owned(),
        })
    }

    async fn upload_part(
        &self,
        upload: &Upload,
        number: u32,
        body: Vec<u8>,
    ) -> Result<UploadedPart, StoreError> {
        let part_number = i32::try_from(number)
            .ok()
            .filter(|n| (1..=MAX_PARTS as i32).contains(n))
            .ok_or_else(|| {
                StoreError(format!(
                    "S3 UploadPart of {}: part {number} is not from 1 to {MAX_PARTS}",
                    upload.key
                ))
            })?;
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .part_number(part_number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(failed)?;
        let etag = uploaded.e_tag().ok_or_else(|| {
            StoreError(format!(
                "S3 UploadPart of {} part {number}: no ETag",
                upload.key
            ))
        })?;
        Ok(UploadedPart {
            number,
            etag: etag.to_owned(),
        })
    }

    async fn complete_upload(
        &self,
        upload: &Upload,
        parts: &[UploadedPart],
    ) -> Result<(), StoreError> {
        let parts = parts
            .iter()
            .map(|part| {
                CompletedPart::builder()
                    .part_number(i32::try_from(part.number).unwrap_or(i32::MAX))
                    .e_tag(&part.etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn abort_upload(&self, upload: &Upload) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.id)
            .send()
            .await
            .map_err(failed)?;
        Ok(())
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
    use aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput;
    use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
    use aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::head_object::HeadObjectOutput;
    use aws_sdk_s3::operation::upload_part::{UploadPartError, UploadPartOutput};
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

    const KEY: &str = "batch-results/abc/results.jsonl";

    fn upload() -> Upload {
        Upload {
            key: KEY.into(),
            id: "upload-1".into(),
        }
    }

    #[tokio::test]
    async fn an_upload_is_created_written_in_numbered_parts_and_completed_with_their_etags() {
        let create = mock!(aws_sdk_s3::Client::create_multipart_upload)
            .match_requests(|req| {
                req.bucket() == Some("batch-bucket")
                    && req.key() == Some(KEY)
                    && req.content_type() == Some("application/x-ndjson")
            })
            .then_output(|| {
                CreateMultipartUploadOutput::builder()
                    .upload_id("upload-1")
                    .build()
            });
        let part = mock!(aws_sdk_s3::Client::upload_part)
            .match_requests(|req| {
                req.bucket() == Some("batch-bucket")
                    && req.key() == Some(KEY)
                    && req.upload_id() == Some("upload-1")
                    && req.part_number() == Some(2)
                    && req.body().bytes() == Some(b"line\n".as_slice())
            })
            .then_output(|| UploadPartOutput::builder().e_tag("\"etag-2\"").build());
        let complete = mock!(aws_sdk_s3::Client::complete_multipart_upload)
            .match_requests(|req| {
                let parts = req
                    .multipart_upload()
                    .map(|m| m.parts())
                    .unwrap_or_default();
                req.bucket() == Some("batch-bucket")
                    && req.key() == Some(KEY)
                    && req.upload_id() == Some("upload-1")
                    && parts.len() == 2
                    && parts[0].part_number() == Some(1)
                    && parts[0].e_tag() == Some("\"etag-1\"")
                    && parts[1].part_number() == Some(2)
                    && parts[1].e_tag() == Some("\"etag-2\"")
            })
            .then_output(|| CompleteMultipartUploadOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&create, &part, &complete]);
        let store = S3Store::new(client, "batch-bucket");

        let upload = store.create_upload(KEY).await.unwrap();
        assert_eq!(upload, self::upload());
        let written = store
            .upload_part(&upload, 2, b"line\n".to_vec())
            .await
            .unwrap();
        assert_eq!(
            written,
            UploadedPart {
                number: 2,
                etag: "\"etag-2\"".into()
            }
        );
        let first = UploadedPart {
            number: 1,
            etag: "\"etag-1\"".into(),
        };
        store
            .complete_upload(&upload, &[first, written])
            .await
            .unwrap();
        assert_eq!(
            (create.num_calls(), part.num_calls(), complete.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn an_upload_is_aborted_by_its_id() {
        let abort = mock!(aws_sdk_s3::Client::abort_multipart_upload)
            .match_requests(|req| {
                req.bucket() == Some("batch-bucket")
                    && req.key() == Some(KEY)
                    && req.upload_id() == Some("upload-1")
            })
            .then_output(|| AbortMultipartUploadOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&abort]);
        S3Store::new(client, "batch-bucket")
            .abort_upload(&upload())
            .await
            .unwrap();
        assert_eq!(abort.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_failed_part_is_an_error_naming_s3s_answer() {
        let part = mock!(aws_sdk_s3::Client::upload_part).then_error(|| {
            UploadPartError::generic(
                aws_sdk_s3::error::ErrorMetadata::builder()
                    .code("SlowDown")
                    .message("slow down")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&part]);
        let error = S3Store::new(client, "batch-bucket")
            .upload_part(&upload(), 1, b"x".to_vec())
            .await
            .unwrap_err();
        assert!(error.0.contains("slow down"), "{error}");
    }

    #[tokio::test]
    async fn a_part_number_s3_refuses_is_never_sent() {
        let part = mock!(aws_sdk_s3::Client::upload_part)
            .then_output(|| UploadPartOutput::builder().e_tag("e").build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&part]);
        let store = S3Store::new(client, "batch-bucket");
        for number in [0, MAX_PARTS + 1] {
            let error = store
                .upload_part(&upload(), number, b"x".to_vec())
                .await
                .unwrap_err();
            assert!(error.0.contains("is not from 1 to 10000"), "{error}");
        }
        assert_eq!(part.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_range_is_read_with_an_inclusive_range_header() {
        let get = mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|req| req.key() == Some(KEY) && req.range() == Some("bytes=4-9"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(b"456789"))
                    .build()
            });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get]);
        let bytes = S3Store::new(client, "batch-bucket")
            .get_range(KEY, 4, 10)
            .await
            .unwrap();
        assert_eq!(bytes, b"456789");
        assert_eq!(get.num_calls(), 1);
    }
}
