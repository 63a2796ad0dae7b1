//! OpenAI's Files API, as far as its Batch API needs it: `POST /openai/v1/files` (a
//! multipart upload of a JSONL of requests, purpose `batch`), `GET /openai/v1/files/{id}` and
//! `GET /openai/v1/files/{id}/content`. A file is kept in the batch bucket under its owner's
//! prefix (`openai-files/{owner}/{id}`, its description beside it as `{id}.json`), so a caller
//! can address only its own files.

use http::{header, Method, StatusCode};
use lambda_http::Request;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use domain::deferred::random_id;
use domain::ports::{Clock, ObjectStore};

use crate::app::{Adapters, App};
use crate::deferred::{digest, unavailable};
use crate::error::ApiError;

/// A file's description, kept beside its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) bytes: usize,
    pub(crate) created_at: i64,
    pub(crate) filename: String,
    /// `batch` (uploaded), `batch_output` (written when a batch ends).
    pub(crate) purpose: String,
}

impl FileRecord {
    pub(crate) fn object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        })
    }
}

/// Where an owner's files are kept.
fn prefix(owner: &str) -> String {
    format!("openai-files/{}", digest(&[owner.as_bytes()]))
}

fn content_key(owner: &str, id: &str) -> String {
    format!("{}/{id}", prefix(owner))
}

fn record_key(owner: &str, id: &str) -> String {
    format!("{}/{id}.json", prefix(owner))
}

/// A file id as this API hands them out (`file-` and hex), or none.
fn check_file_id(id: &str) -> Option<&str> {
    let hex = id.strip_prefix("file-")?;
    (!hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

pub(crate) fn file_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!("No such File object: {id}"),
    )
    .with_param("file_id")
}

impl<A: Adapters> App<A> {
    pub(crate) fn files(&self) -> Result<&A::Files, ApiError> {
        self.ports.files.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "files are not enabled in this deployment (FILES_BUCKET_NAME is unset)",
            )
        })
    }

    /// `POST /openai/v1/files`: stores the upload, answers its File object.
    pub(crate) async fn upload_file(
        &self,
        request: &Request,
        owner: &str,
    ) -> Result<Value, ApiError> {
        let files = self.files()?;
        let body = request.body().as_ref();
        if body.len() > self.config.deferred.max_file_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "the file is {} bytes; the most this deployment takes is {} (OPENAI_FILE_MAX_BYTES): split it into several batches",
                    body.len(),
                    self.config.deferred.max_file_bytes
                ),
            ));
        }
        let (purpose, filename, bytes) = read_multipart(request).await?;
        if purpose != "batch" {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("purpose {purpose:?} is not served here; upload with purpose \"batch\""),
            )
            .with_param("purpose"));
        }
        let id = format!(
            "file-{}",
            random_id().map_err(|error| {
                tracing::error!(%error, "no file id");
                unavailable()
            })?
        );
        let record = FileRecord {
            id,
            owner: owner.to_owned(),
            bytes: bytes.len(),
            created_at: self.ports.clock.now().timestamp(),
            filename,
            purpose,
        };
        self.put_file(files, &record, bytes).await?;
        Ok(record.object())
    }

    /// Writes a file's bytes, then its description (which makes it visible).
    pub(crate) async fn put_file(
        &self,
        files: &A::Files,
        record: &FileRecord,
        bytes: Vec<u8>,
    ) -> Result<(), ApiError> {
        let stored = async {
            files
                .put(&content_key(&record.owner, &record.id), bytes)
                .await?;
            files
                .put(
                    &record_key(&record.owner, &record.id),
                    serde_json::to_vec(record).unwrap_or_default(),
                )
                .await
        };
        stored.await.map_err(|error| {
            tracing::error!(%error, "file not stored");
            unavailable()
        })
    }

    /// The owner's file `id`, or 404 (another owner's file is as absent as none).
    pub(crate) async fn file_record(&self, owner: &str, id: &str) -> Result<FileRecord, ApiError> {
        let files = self.files()?;
        let id = check_file_id(id).ok_or_else(|| file_not_found(id))?;
        let bytes = files
            .get(&record_key(owner, id))
            .await
            .map_err(|error| {
                tracing::error!(%error, "file description unreadable");
                unavailable()
            })?
            .ok_or_else(|| file_not_found(id))?;
        let record: FileRecord = serde_json::from_slice(&bytes).map_err(|_| file_not_found(id))?;
        if record.owner != owner {
            return Err(file_not_found(id));
        }
        Ok(record)
    }

    /// The bytes of the owner's file `id`.
    pub(crate) async fn file_content(&self, owner: &str, id: &str) -> Result<Vec<u8>, ApiError> {
        let record = self.file_record(owner, id).await?;
        self.files()?
            .get(&content_key(owner, &record.id))
            .await
            .map_err(|error| {
                tracing::error!(%error, "file unreadable");
                unavailable()
            })?
            .ok_or_else(|| file_not_found(id))
    }

    /// The files routes: the File object, or the bytes with their content type.
    pub(crate) async fn files_route(
        &self,
        request: &Request,
        owner: &str,
        rest: &[&str],
    ) -> Result<FilesAnswer, ApiError> {
        match (request.method(), rest) {
            (&Method::POST, []) => self
                .upload_file(request, owner)
                .await
                .map(FilesAnswer::Json),
            (&Method::GET, [id]) => Ok(FilesAnswer::Json(
                self.file_record(owner, id).await?.object(),
            )),
            (&Method::GET, [id, "content"]) => {
                Ok(FilesAnswer::Bytes(self.file_content(owner, id).await?))
            }
            _ => Err(crate::intake::not_served_here(request)),
        }
    }
}

/// What a files route answers.
pub(crate) enum FilesAnswer {
    Json(Value),
    Bytes(Vec<u8>),
}

/// The `purpose` and `file` fields of a multipart upload: the purpose, the file's name and its
/// bytes.
async fn read_multipart(request: &Request) -> Result<(String, String, Vec<u8>), ApiError> {
    let refused =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        refused(format!(
            "content-type {content_type:?} is not multipart/form-data with a boundary; upload the file as a form (purpose, file)"
        ))
    })?;
    let body = bytes::Bytes::copy_from_slice(request.body().as_ref());
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let (mut purpose, mut file) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| refused(format!("the form is unreadable: {e}")))?
    {
        match field.name() {
            Some("purpose") => {
                purpose = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| refused(format!("purpose is unreadable: {e}")))?,
                );
            }
            Some("file") => {
                let filename = field.file_name().unwrap_or("upload.jsonl").to_owned();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| refused(format!("file is unreadable: {e}")))?;
                file = Some((filename, bytes.to_vec()));
            }
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| refused("the form has no purpose field".into()))?;
    let (filename, bytes) = file.ok_or_else(|| refused("the form has no file field".into()))?;
    Ok((purpose, filename, bytes))
}
