//! Response bodies: whole (JSON) or streamed (server-sent events written as the model answers).

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::mpsc;

/// The body of every answer of the function.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// Frames waiting for a slow client, at most: beyond it the writer waits, so a client that
/// stopped reading is noticed within a frame or two.
const STREAM_BUFFER: usize = 2;

pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// Frames known in advance (a cached answer replayed).
pub fn frames(frames: Vec<Bytes>) -> ResponseBody {
    let stream = futures_util::stream::iter(
        frames
            .into_iter()
            .map(|frame| Ok::<_, Infallible>(Frame::data(frame))),
    );
    StreamBody::new(stream).boxed_unsync()
}

/// A body fed by the returned sender. Sending fails once the client is gone.
pub fn channel() -> (mpsc::Sender<Bytes>, ResponseBody) {
    let (sender, receiver) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(Frame::data(frame)), receiver))
    });
    (sender, StreamBody::new(stream).boxed_unsync())
}
