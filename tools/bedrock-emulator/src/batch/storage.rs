//! Where batch jobs read their input and write their output: S3 (moto in the local stack,
//! reached the way any SDK reaches it: `AWS_ENDPOINT_URL_S3`, region and credentials from the
//! environment), or memory in unit tests.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};

use aws_sdk_s3::error::DisplayErrorContext;
use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

/// `s3://bucket/key-or-prefix`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl S3Location {
    /// Splits an `s3://` URI already checked against the model's `S3Uri` pattern.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        Some(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The key of `name` under this location taken as a folder (`child("")` is the folder's
    /// prefix: empty, or ending with `/`).
    pub fn child(&self, name: &str) -> String {
        match self.key.trim_end_matches('/') {
            "" => name.to_owned(),
            prefix => format!("{prefix}/{name}"),
        }
    }
}

/// One input file: its name (the last segment of its key) and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub name: String,
    pub body: String,
}

/// The object operations a job needs. Errors are messages for the job's `message`.
pub trait Storage: Send + Sync + Debug {
    /// The object's content, `None` if there is no such key (the bucket exists).
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Every key under a prefix.
    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, String>>;
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: String,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The input of a job as Bedrock reads it: the object the URI names, or else every `.jsonl`
/// object under it taken as a folder.
pub async fn read_input(
    storage: &dyn Storage,
    location: &S3Location,
) -> Result<Vec<InputFile>, String> {
    let uri = format!("s3://{}/{}", location.bucket, location.key);
    let unreadable = |e: String| format!("Unable to read the input data at {uri}: {e}");
    if !location.key.is_empty() && !location.key.ends_with('/') {
        if let Some(body) = storage
            .get(&location.bucket, &location.key)
            .await
            .map_err(unreadable)?
        {
            return Ok(vec![InputFile {
                name: file_name(&location.key).to_owned(),
                body,
            }]);
        }
    }
    let prefix = location.child("");
    let mut files = Vec::new();
    for key in storage
        .list(&location.bucket, &prefix)
        .await
        .map_err(unreadable)?
    {
        if !key.ends_with(".jsonl") {
            continue;
        }
        let body = storage
            .get(&location.bucket, &key)
            .await
            .map_err(unreadable)?
            .ok_or_else(|| unreadable(format!("{key} disappeared while being read")))?;
        files.push(InputFile {
            name: file_name(&key).to_owned(),
            body,
        });
    }
    if files.is_empty() {
        return Err(format!(
            "No input data found at {uri}: it must be a .jsonl object or a folder holding .jsonl objects."
        ));
    }
    Ok(files)
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// S3 through the AWS SDK, created on first use from the environment, path-style.
#[derive(Debug, Default)]
pub struct S3Storage {
    client: OnceCell<aws_sdk_s3::Client>,
}

impl S3Storage {
    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| async {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                let config = aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(true)
                    .build();
                aws_sdk_s3::Client::from_conf(config)
            })
            .await
    }
}

impl Storage for S3Storage {
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let client = self.client().await;
            match client.get_object().bucket(bucket).key(key).send().await {
                Ok(object) => {
                    let bytes = object
                        .body
                        .collect()
                        .await
                        .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?
                        .into_bytes();
                    String::from_utf8(bytes.to_vec())
                        .map(Some)
                        .map_err(|_| format!("s3://{bucket}/{key} is not UTF-8 text"))
                }
                Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
                Err(e) => Err(DisplayErrorContext(&e).to_string()),
            }
        })
    }

    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let client = self.client().await;
            let mut keys = Vec::new();
            let mut pages = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| DisplayErrorContext(&e).to_string())?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
            }
            Ok(keys)
        })
    }

    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: String,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.client()
                .await
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/jsonl")
                .body(body.into_bytes().into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(&e).to_string())
        })
    }
}

/// Buckets in memory, for unit tests: a bucket exists once something was put in it or it was
/// created.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    buckets: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl MemoryStorage {
    pub fn create_bucket(&self, bucket: &str) {
        self.lock().entry(bucket.to_owned()).or_default();
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<String> {
        self.lock().get(bucket)?.get(key).cloned()
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, String>>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bucket<T>(
        &self,
        bucket: &str,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> T,
    ) -> Result<T, String> {
        let mut buckets = self.lock();
        let objects = buckets.get_mut(bucket).ok_or_else(|| {
            format!("NoSuchBucket: The specified bucket does not exist ({bucket})")
        })?;
        Ok(f(objects))
    }
}

impl Storage for MemoryStorage {
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { self.bucket(bucket, |o| o.get(key).cloned()) })
    }

    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            self.bucket(bucket, |o| {
                o.keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
        })
    }

    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: String,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.bucket(bucket, |o| {
                o.insert(key.to_owned(), body);
            })
        })
    }
}
