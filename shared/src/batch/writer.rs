//! Writing one object a part at a time, so that its size never decides the memory it takes.

use domain::error::StoreError;
use domain::ports::{ObjectStore, Upload, UploadedPart, MAX_PARTS, MIN_PART_BYTES};

/// Writes one object from the bytes it is given, in parts of [`MIN_PART_BYTES`]: memory holds
/// one part whatever the object's size.
///
/// The first full part starts a multipart upload ([`ObjectStore::create_upload`]); each full
/// part is sent as it fills, the rest by [`finish`](Self::finish), which completes the upload.
/// An object smaller than a part is one `put` at `finish`. Nothing is readable at the key
/// before `finish` succeeds: a `finish` that fails aborts the upload itself, and a writer given
/// up on (a read or a part failed) is [`abort`](Self::abort)ed, so no part is left behind.
pub struct ObjectWriter<'a, S> {
    store: &'a S,
    key: String,
    buffer: Vec<u8>,
    upload: Option<Upload>,
    parts: Vec<UploadedPart>,
}

impl<'a, S: ObjectStore> ObjectWriter<'a, S> {
    pub fn new(store: &'a S, key: impl Into<String>) -> Self {
        Self {
            store,
            key: key.into(),
            buffer: Vec::new(),
            upload: None,
            parts: Vec::new(),
        }
    }

    /// The bytes the part being filled still takes before it is sent.
    pub fn room(&self) -> usize {
        MIN_PART_BYTES - self.buffer.len()
    }

    /// Appends `len` zero bytes (at most [`room`](Self::room)) to the part being filled and
    /// hands them over to be written in place, so that lines can be put at their offsets in
    /// any order without a copy of the part; [`flush`](Self::flush) then sends it if full.
    pub fn append_zeroed(&mut self, len: usize) -> &mut [u8] {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(MIN_PART_BYTES);
        }
        let start = self.buffer.len();
        self.buffer.resize(start + len.min(self.room()), 0);
        &mut self.buffer[start..]
    }

    /// Sends the part being filled if it is full.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if self.buffer.len() >= MIN_PART_BYTES {
            self.send_part().await?;
        }
        Ok(())
    }

    /// Adds bytes at the end of the object; sends each part as it fills (a line may straddle
    /// two parts: parts are ranges of bytes).
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        while !bytes.is_empty() {
            if self.buffer.capacity() == 0 {
                // Reserved whole, so the buffer never grows by doubling past a part.
                self.buffer.reserve_exact(MIN_PART_BYTES);
            }
            let room = MIN_PART_BYTES - self.buffer.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buffer.extend_from_slice(now);
            bytes = rest;
            self.flush().await?;
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), StoreError> {
        let upload = match &self.upload {
            Some(upload) => upload.clone(),
            None => {
                let upload = self.store.create_upload(&self.key).await?;
                self.upload = Some(upload.clone());
                upload
            }
        };
        let number = u32::try_from(self.parts.len())
            .ok()
            .and_then(|n| n.checked_add(1))
            .filter(|n| *n <= MAX_PARTS)
            .ok_or_else(|| {
                StoreError(format!(
                    "{}: more than {MAX_PARTS} parts of {MIN_PART_BYTES} bytes",
                    self.key
                ))
            })?;
        let body = std::mem::take(&mut self.buffer);
        let part = self.store.upload_part(&upload, number, body).await?;
        self.parts.push(part);
        Ok(())
    }

    /// Writes what is left and makes the object readable, whole. On failure the upload is
    /// aborted before the error is returned.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buffer);
            return self.store.put(&self.key, body).await;
        }
        let mut result = Ok(());
        if !self.buffer.is_empty() {
            result = self.send_part().await;
        }
        if result.is_ok() {
            if let Some(upload) = &self.upload {
                result = self.store.complete_upload(upload, &self.parts).await;
            }
        }
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Gives the object up: drops the upload and its parts, if one was started. The key keeps
    /// what it had. A failure to abort is logged (S3's lifecycle rule for incomplete uploads
    /// removes the parts).
    pub async fn abort(self) {
        if let Some(upload) = &self.upload {
            if let Err(error) = self.store.abort_upload(upload).await {
                tracing::warn!(key = upload.key, %error, "could not abort a multipart upload");
            }
        }
    }
}
