//! AWS event-stream framing (`application/vnd.amazon.eventstream`) for streamed answers.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::Bytes;
use serde_json::Value;

/// One `event` frame whose payload is the event's members as JSON.
pub fn event_frame(event_type: &'static str, payload: &Value) -> Result<Bytes, std::io::Error> {
    frame(("event", ":event-type"), event_type, payload)
}

/// One `exception` frame: the SDKs turn it into the stream's typed error (`:exception-type`
/// names the member of the output union, e.g. `throttlingException`).
pub fn exception_frame(
    exception_type: &'static str,
    payload: &Value,
) -> Result<Bytes, std::io::Error> {
    frame(("exception", ":exception-type"), exception_type, payload)
}

fn frame(
    (message_type, type_header): (&'static str, &'static str),
    type_name: &'static str,
    payload: &Value,
) -> Result<Bytes, std::io::Error> {
    let message = Message::new(payload.to_string())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.into()),
        ))
        .add_header(Header::new(
            type_header,
            HeaderValue::String(type_name.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut buffer = Vec::with_capacity(128 + message.payload().len());
    write_message_to(&message, &mut buffer).map_err(std::io::Error::other)?;
    Ok(Bytes::from(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    fn header(message: &Message, name: &str) -> Option<String> {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok().map(|s| s.as_str().to_owned()))
    }

    #[test]
    fn exception_frames_carry_the_exception_type() {
        let frame = exception_frame(
            "throttlingException",
            &serde_json::json!({"message": "slow"}),
        )
        .unwrap();
        let message = read_message_from(frame.as_ref()).unwrap();
        assert_eq!(
            header(&message, ":message-type").as_deref(),
            Some("exception")
        );
        assert_eq!(
            header(&message, ":exception-type").as_deref(),
            Some("throttlingException")
        );
        assert_eq!(header(&message, ":event-type"), None);
        assert_eq!(message.payload().as_ref(), br#"{"message":"slow"}"#);
    }

    #[test]
    fn frames_round_trip() {
        let frame = event_frame(
            "messageStop",
            &serde_json::json!({"stopReason": "end_turn"}),
        )
        .unwrap();
        let message = read_message_from(frame.as_ref()).unwrap();
        let event_type = message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == ":event-type")
            .and_then(|h| h.value().as_string().ok().map(|s| s.as_str().to_owned()));
        assert_eq!(event_type.as_deref(), Some("messageStop"));
        assert_eq!(message.payload().as_ref(), br#"{"stopReason":"end_turn"}"#);
    }
}
