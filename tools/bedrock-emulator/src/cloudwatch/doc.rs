//! One document tree for both of CloudWatch's wire formats: Smithy RPC v2 CBOR (the AWS SDK for
//! Rust) and awsJson1_0 (boto3 and the AWS CLI). Requests decode into a [`Doc`], answers are built
//! as a [`Doc`] and encoded for the protocol the request came in.
//!
//! Timestamps are epoch seconds: CBOR tag 1 over an integer or a float, a JSON number.
//! Doubles may be CBOR floats of any width or integers; in JSON, numbers or the strings
//! `"NaN"`, `"Infinity"` and `"-Infinity"` (Smithy's JSON spelling of the special values).

use std::convert::Infallible;

use minicbor::data::{IanaTag, Tag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};

use super::error::CwError;

/// Deeper nesting than any CloudWatch shape needs is refused before it exhausts the stack.
const MAX_DEPTH: u32 = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    List(Vec<Doc>),
    Map(Vec<(String, Doc)>),
    /// Epoch seconds.
    Timestamp(f64),
}

impl Doc {
    /// A structure from its members, skipping absent (`None`) ones.
    pub fn structure<const N: usize>(members: [(&str, Option<Doc>); N]) -> Doc {
        Doc::Map(
            members
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
                .collect(),
        )
    }

    pub fn text(value: impl Into<String>) -> Doc {
        Doc::Text(value.into())
    }

    fn kind(&self) -> &'static str {
        match self {
            Doc::Null => "null",
            Doc::Bool(_) => "boolean",
            Doc::Int(_) => "integer",
            Doc::Float(_) => "float",
            Doc::Text(_) => "string",
            Doc::Bytes(_) => "blob",
            Doc::List(_) => "list",
            Doc::Map(_) => "structure",
            Doc::Timestamp(_) => "timestamp",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CBOR

/// Decodes one CBOR data item, the whole body. An empty body is an empty structure.
pub fn from_cbor(bytes: &[u8]) -> Result<Doc, CwError> {
    if bytes.is_empty() {
        return Ok(Doc::Map(Vec::new()));
    }
    let mut decoder = Decoder::new(bytes);
    let doc = cbor_item(&mut decoder, 0)
        .map_err(|e| CwError::serialization(format!("invalid CBOR body: {e}")))?;
    if decoder.position() != bytes.len() {
        return Err(CwError::serialization(format!(
            "invalid CBOR body: {} bytes after the first data item",
            bytes.len() - decoder.position()
        )));
    }
    Ok(doc)
}

type DecodeResult<T> = Result<T, minicbor::decode::Error>;

fn cbor_item(d: &mut Decoder<'_>, depth: u32) -> DecodeResult<Doc> {
    if depth > MAX_DEPTH {
        return Err(minicbor::decode::Error::message("nesting too deep"));
    }
    Ok(match d.datatype()? {
        Type::Bool => Doc::Bool(d.bool()?),
        Type::Null | Type::Undefined => {
            d.skip()?;
            Doc::Null
        }
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Doc::Int(i128::from(d.int()?)),
        Type::F16 | Type::F32 | Type::F64 => Doc::Float(d.f64()?),
        Type::String | Type::StringIndef => {
            let mut text = String::new();
            for chunk in d.str_iter()? {
                text.push_str(chunk?);
            }
            Doc::Text(text)
        }
        Type::Bytes | Type::BytesIndef => {
            let mut bytes = Vec::new();
            for chunk in d.bytes_iter()? {
                bytes.extend_from_slice(chunk?);
            }
            Doc::Bytes(bytes)
        }
        Type::Array | Type::ArrayIndef => {
            let mut items = Vec::new();
            match d.array()? {
                Some(len) => {
                    for _ in 0..len {
                        items.push(cbor_item(d, depth + 1)?);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        items.push(cbor_item(d, depth + 1)?);
                    }
                    d.skip()?;
                }
            }
            Doc::List(items)
        }
        Type::Map | Type::MapIndef => {
            let mut members = Vec::new();
            match d.map()? {
                Some(len) => {
                    for _ in 0..len {
                        members.push(cbor_member(d, depth)?);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        members.push(cbor_member(d, depth)?);
                    }
                    d.skip()?;
                }
            }
            Doc::Map(members)
        }
        Type::Tag => {
            let tag = d.tag()?;
            let inner = cbor_item(d, depth + 1)?;
            if tag == Tag::from(IanaTag::Timestamp) {
                match inner {
                    Doc::Int(seconds) => Doc::Timestamp(seconds as f64),
                    Doc::Float(seconds) => Doc::Timestamp(seconds),
                    _ => {
                        return Err(minicbor::decode::Error::message(
                            "tag 1 (epoch timestamp) must hold an integer or a float",
                        ))
                    }
                }
            } else {
                inner
            }
        }
        Type::Simple | Type::Break | Type::Unknown(_) => {
            return Err(minicbor::decode::Error::message(
                "unexpected CBOR data item",
            ))
        }
    })
}

fn cbor_member(d: &mut Decoder<'_>, depth: u32) -> DecodeResult<(String, Doc)> {
    let key = match cbor_item(d, depth + 1)? {
        Doc::Text(key) => key,
        _ => return Err(minicbor::decode::Error::message("map keys must be strings")),
    };
    Ok((key, cbor_item(d, depth + 1)?))
}

/// Encodes a document as CBOR: definite lengths, doubles as 64-bit floats, timestamps as tag 1
/// over a float (as the AWS SDKs write them).
pub fn to_cbor(doc: &Doc) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new());
    cbor_write(&mut encoder, doc);
    encoder.into_writer()
}

/// The only errors of an encoder over a `Vec` are the writer's, and that writer cannot fail.
fn written<T>(_: Result<T, minicbor::encode::Error<Infallible>>) {}

fn cbor_write(e: &mut Encoder<Vec<u8>>, doc: &Doc) {
    match doc {
        Doc::Null => written(e.null()),
        Doc::Bool(b) => written(e.bool(*b)),
        Doc::Int(i) => match i64::try_from(*i) {
            Ok(i) => written(e.i64(i)),
            Err(_) => written(e.f64(*i as f64)),
        },
        Doc::Float(f) => written(e.f64(*f)),
        Doc::Text(s) => written(e.str(s)),
        Doc::Bytes(b) => written(e.bytes(b)),
        Doc::List(items) => {
            written(e.array(items.len() as u64));
            for item in items {
                cbor_write(e, item);
            }
        }
        Doc::Map(members) => {
            written(e.map(members.len() as u64));
            for (key, value) in members {
                written(e.str(key));
                cbor_write(e, value);
            }
        }
        Doc::Timestamp(seconds) => {
            written(e.tag(IanaTag::Timestamp));
            written(e.f64(*seconds));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Decodes an awsJson1_0 body. An empty body is an empty structure.
pub fn from_json(bytes: &[u8]) -> Result<Doc, CwError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Doc::Map(Vec::new()));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| CwError::serialization(format!("invalid JSON body: {e}")))?;
    Ok(from_value(value))
}

pub fn from_value(value: Value) -> Doc {
    match value {
        Value::Null => Doc::Null,
        Value::Bool(b) => Doc::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Doc::Int(i128::from(i)),
            (None, Some(u)) => Doc::Int(i128::from(u)),
            _ => Doc::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Doc::Text(s),
        Value::Array(items) => Doc::List(items.into_iter().map(from_value).collect()),
        Value::Object(members) => Doc::Map(
            members
                .into_iter()
                .map(|(key, value)| (key, from_value(value)))
                .collect(),
        ),
    }
}

/// Encodes a document as awsJson1_0: timestamps as epoch seconds, the special doubles as strings.
pub fn to_json(doc: &Doc) -> Value {
    fn float(f: f64) -> Value {
        match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None if f.is_nan() => Value::from("NaN"),
            None if f > 0.0 => Value::from("Infinity"),
            None => Value::from("-Infinity"),
        }
    }
    match doc {
        Doc::Null => Value::Null,
        Doc::Bool(b) => Value::Bool(*b),
        Doc::Int(i) => match i64::try_from(*i) {
            Ok(i) => Value::from(i),
            Err(_) => float(*i as f64),
        },
        Doc::Float(f) | Doc::Timestamp(f) => float(*f),
        Doc::Text(s) => Value::from(s.as_str()),
        Doc::Bytes(b) => Value::from(base64(b)),
        Doc::List(items) => Value::Array(items.iter().map(to_json).collect()),
        Doc::Map(members) => Value::Object(
            members
                .iter()
                .map(|(key, value)| (key.clone(), to_json(value)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// Blobs travel as base64 in awsJson (no CloudWatch answer the emulator gives holds one).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading a request's members

/// A structure of a request, with the path of its members for error messages
/// (`MetricData.member.3.Dimensions`, as CloudWatch names them).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    members: &'a [(String, Doc)],
    path: &'a str,
}

impl<'a> Fields<'a> {
    /// The top-level input structure.
    pub fn root(doc: &'a Doc) -> Result<Self, CwError> {
        match doc {
            Doc::Map(members) => Ok(Self { members, path: "" }),
            other => Err(CwError::serialization(format!(
                "the request body must be a structure, got {}",
                other.kind()
            ))),
        }
    }

    pub fn at(doc: &'a Doc, path: &'a str) -> Result<Self, CwError> {
        match doc {
            Doc::Map(members) => Ok(Self { members, path }),
            other => Err(mismatch(path, "structure", other)),
        }
    }

    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The path of a member of this structure.
    pub fn member_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// A member; a `null` counts as absent, as the protocols' deserializers treat it.
    pub fn get(&self, name: &str) -> Option<&'a Doc> {
        self.members
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
            .filter(|value| **value != Doc::Null)
    }

    pub fn string(&self, name: &str) -> Result<Option<&'a str>, CwError> {
        match self.get(name) {
            None => Ok(None),
            Some(Doc::Text(s)) => Ok(Some(s)),
            Some(other) => Err(mismatch(&self.member_path(name), "string", other)),
        }
    }

    pub fn double(&self, name: &str) -> Result<Option<f64>, CwError> {
        self.get(name)
            .map(|value| double(&self.member_path(name), value))
            .transpose()
    }

    pub fn integer(&self, name: &str) -> Result<Option<i64>, CwError> {
        match self.get(name) {
            None => Ok(None),
            Some(Doc::Int(i)) => i64::try_from(*i)
                .map(Some)
                .map_err(|_| mismatch(&self.member_path(name), "integer", &Doc::Int(*i))),
            Some(other) => Err(mismatch(&self.member_path(name), "integer", other)),
        }
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, CwError> {
        match self.get(name) {
            None => Ok(None),
            Some(Doc::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(mismatch(&self.member_path(name), "boolean", other)),
        }
    }

    /// Epoch seconds: a CBOR tag 1, or a JSON number.
    pub fn timestamp(&self, name: &str) -> Result<Option<f64>, CwError> {
        match self.get(name) {
            None => Ok(None),
            Some(Doc::Timestamp(s) | Doc::Float(s)) if s.is_finite() => Ok(Some(*s)),
            Some(Doc::Int(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(mismatch(&self.member_path(name), "timestamp", other)),
        }
    }

    pub fn list(&self, name: &str) -> Result<Option<&'a [Doc]>, CwError> {
        match self.get(name) {
            None => Ok(None),
            Some(Doc::List(items)) => Ok(Some(items)),
            Some(other) => Err(mismatch(&self.member_path(name), "list", other)),
        }
    }
}

/// A double: any number, or one of the special values spelled as JSON strings.
pub fn double(path: &str, value: &Doc) -> Result<f64, CwError> {
    match value {
        Doc::Float(f) => Ok(*f),
        Doc::Int(i) => Ok(*i as f64),
        Doc::Text(s) if s == "NaN" => Ok(f64::NAN),
        Doc::Text(s) if s == "Infinity" => Ok(f64::INFINITY),
        Doc::Text(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        other => Err(mismatch(path, "double", other)),
    }
}

fn mismatch(path: &str, expected: &str, got: &Doc) -> CwError {
    CwError::serialization(format!("{path}: expected {expected}, got {}", got.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_round_trips_with_timestamps_and_doubles() {
        let doc = Doc::structure([
            ("Id", Some(Doc::text("m1"))),
            (
                "Timestamps",
                Some(Doc::List(vec![Doc::Timestamp(1_700_000_060.0)])),
            ),
            ("Values", Some(Doc::List(vec![Doc::Float(2.5)]))),
            ("Count", Some(Doc::Int(-3))),
            ("Absent", None),
        ]);
        let bytes = to_cbor(&doc);
        // Tag 1 (0xc1) over a 64-bit float (0xfb); the double as a 64-bit float too.
        assert!(bytes.windows(2).any(|w| w == [0xc1, 0xfb]));
        assert!(bytes
            .windows(9)
            .any(|w| w == [&[0xfb][..], &2.5f64.to_be_bytes()].concat()));
        assert_eq!(from_cbor(&bytes).unwrap(), doc);
    }

    #[test]
    fn cbor_accepts_indefinite_lengths_small_floats_and_integer_timestamps() {
        // {_ "a": [_ 1.5 (f16), -2], "t": 1(1700000000)}
        let bytes = [
            0xbf, 0x61, b'a', 0x9f, 0xf9, 0x3e, 0x00, 0x21, 0xff, 0x61, b't', 0xc1, 0x1a, 0x65,
            0x53, 0xf1, 0x00, 0xff,
        ];
        let doc = from_cbor(&bytes).unwrap();
        let fields = Fields::root(&doc).unwrap();
        let list = fields.list("a").unwrap().unwrap();
        assert_eq!(double("a", &list[0]).unwrap(), 1.5);
        assert_eq!(double("a", &list[1]).unwrap(), -2.0);
        assert_eq!(fields.timestamp("t").unwrap(), Some(1_700_000_000.0));
    }

    #[test]
    fn malformed_bodies_are_serialization_errors() {
        for bytes in [&[0xa1, 0x61][..], &[0xa0, 0x00], &[0xa1, 0x01, 0x02]] {
            let error = from_cbor(bytes).unwrap_err();
            assert_eq!(error.code, "SerializationException", "{bytes:?}");
        }
        assert!(from_json(b"{").is_err());
        assert_eq!(from_json(b"").unwrap(), Doc::Map(Vec::new()));
    }

    #[test]
    fn json_special_doubles_and_type_mismatches() {
        let doc = from_json(br#"{"v": "NaN", "w": "Infinity", "s": 3, "t": 1.5}"#).unwrap();
        let fields = Fields::root(&doc).unwrap();
        assert!(fields.double("v").unwrap().unwrap().is_nan());
        assert_eq!(fields.double("w").unwrap(), Some(f64::INFINITY));
        assert_eq!(fields.timestamp("t").unwrap(), Some(1.5));
        let error = fields.string("s").unwrap_err();
        assert_eq!(error.message, "s: expected string, got integer");
        assert_eq!(
            to_json(&Doc::List(vec![
                Doc::Float(f64::NAN),
                Doc::Timestamp(60.0),
                Doc::Bytes(b"any carnal pleas".to_vec()),
                Doc::Bytes(b"ab".to_vec()),
            ])),
            serde_json::json!(["NaN", 60.0, "YW55IGNhcm5hbCBwbGVhcw==", "YWI="])
        );
    }
}
