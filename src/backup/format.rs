//! The backup format, independent of the database it came from: one JSON
//! header line, then one JSON line per row, then a trailer line with the
//! row count of every table. Every value is written in a normal form that
//! reads back the same on SQLite and PostgreSQL.
//!
//! Values: timestamps are RFC 3339 UTC with six fraction digits
//! (`2026-12-03T18:30:00.000000Z`), UUIDs and decimals are strings, bytes are
//! base64, JSON columns carry their JSON text as a string (so a JSON `null`
//! stays distinct from SQL `NULL`), and SQL `NULL` is `null`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use sea_orm::sea_query::ColumnType;
use sea_orm::{JsonValue, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::BackupError;

/// What the header's `format` says, so a stray file is told apart at once.
pub const FORMAT_NAME: &str = "spanglish-backup";

/// Bumped when a reader of the old version could not read the new one.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    /// The version of spanglish that wrote the backup.
    pub app_version: String,
    /// `sqlite` or `postgres`: where the rows came from, for the record.
    pub source: String,
    /// The migrations applied to the database the rows came from, in order.
    pub migrations: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Every table, in an order where a row's foreign keys point only to
    /// tables before it (or to its own).
    pub tables: Vec<TableSchema>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<ColumnSchema>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// The portable column types. Each maps to one `sea_orm::Value` variant, so a
/// value is bound the same way the application itself binds it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Boolean,
    Smallint,
    Integer,
    Bigint,
    Double,
    Decimal,
    Text,
    Bytes,
    Json,
    /// A point in time (`timestamptz`), always written in UTC.
    Timestamptz,
    /// A wall-clock date and time without a zone.
    Timestamp,
    Date,
    Uuid,
}

impl Kind {
    /// The portable type of an entity column; `None` for a type this format
    /// does not carry yet (a test reads every column of every table, so a
    /// new one is noticed before it ships).
    pub fn of(column_type: &ColumnType) -> Option<Kind> {
        Some(match column_type {
            ColumnType::Boolean => Kind::Boolean,
            ColumnType::TinyInteger | ColumnType::SmallInteger => Kind::Smallint,
            ColumnType::Integer => Kind::Integer,
            ColumnType::BigInteger => Kind::Bigint,
            ColumnType::Float | ColumnType::Double => Kind::Double,
            ColumnType::Decimal(_) | ColumnType::Money(_) => Kind::Decimal,
            ColumnType::Char(_)
            | ColumnType::String(_)
            | ColumnType::Text
            | ColumnType::Enum { .. } => Kind::Text,
            ColumnType::Blob | ColumnType::Binary(_) | ColumnType::VarBinary(_) => Kind::Bytes,
            ColumnType::Json | ColumnType::JsonBinary => Kind::Json,
            ColumnType::TimestampWithTimeZone => Kind::Timestamptz,
            ColumnType::DateTime | ColumnType::Timestamp => Kind::Timestamp,
            ColumnType::Date => Kind::Date,
            ColumnType::Uuid => Kind::Uuid,
            _ => return None,
        })
    }
}

/// Every line after the header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Line {
    Row {
        table: String,
        row: serde_json::Map<String, JsonValue>,
    },
    Trailer {
        trailer: Trailer,
    },
}

/// The last line: how many rows of each table precede it. A backup without
/// it, or whose counts differ, is incomplete.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Trailer {
    pub counts: std::collections::BTreeMap<String, u64>,
}

const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// A database value in its portable form.
pub fn encode(value: Value) -> Result<JsonValue, BackupError> {
    let json = match value {
        Value::Bool(v) => v.map(JsonValue::from),
        Value::TinyInt(v) => v.map(JsonValue::from),
        Value::SmallInt(v) => v.map(JsonValue::from),
        Value::Int(v) => v.map(JsonValue::from),
        Value::BigInt(v) => v.map(JsonValue::from),
        Value::TinyUnsigned(v) => v.map(JsonValue::from),
        Value::SmallUnsigned(v) => v.map(JsonValue::from),
        Value::Unsigned(v) => v.map(JsonValue::from),
        Value::BigUnsigned(v) => v.map(JsonValue::from),
        Value::Float(v) => v.map(|f| JsonValue::from(f64::from(f))),
        Value::Double(v) => v.map(JsonValue::from),
        Value::String(v) => v.map(JsonValue::from),
        Value::Char(v) => v.map(|c| JsonValue::from(c.to_string())),
        Value::Bytes(v) => v.map(|b| JsonValue::from(BASE64.encode(b))),
        Value::Json(v) => v.map(|j| JsonValue::from(j.to_string())),
        Value::ChronoDateTimeUtc(v) => v.map(|t| timestamptz(&t)),
        Value::ChronoDateTimeWithTimeZone(v) => v.map(|t| timestamptz(&t.with_timezone(&Utc))),
        Value::ChronoDateTime(v) => v.map(|t| JsonValue::from(t.format(TIME_FORMAT).to_string())),
        Value::ChronoDate(v) => v.map(|d| JsonValue::from(d.format("%Y-%m-%d").to_string())),
        Value::Uuid(v) => v.map(|u| JsonValue::from(u.hyphenated().to_string())),
        Value::Decimal(v) => v.map(|d| JsonValue::from(d.to_string())),
        other => {
            return Err(BackupError::Unsupported(format!(
                "a column holds a value of a type backups do not carry: {other:?}"
            )));
        }
    };
    Ok(json.unwrap_or(JsonValue::Null))
}

fn timestamptz(t: &DateTime<Utc>) -> JsonValue {
    JsonValue::from(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// The database value of a portable one; any mismatch means the file was
/// not written by this format.
pub fn decode(kind: Kind, json: &JsonValue) -> Result<Value, String> {
    if json.is_null() {
        return Ok(null_of(kind));
    }
    let text = || {
        json.as_str()
            .ok_or_else(|| format!("expected a string for {kind:?}"))
    };
    let int = || {
        json.as_i64()
            .ok_or_else(|| format!("expected an integer for {kind:?}"))
    };
    Ok(match kind {
        Kind::Boolean => Value::Bool(Some(json.as_bool().ok_or("expected a boolean")?)),
        Kind::Smallint => Value::SmallInt(Some(i16::try_from(int()?).map_err(|e| e.to_string())?)),
        Kind::Integer => Value::Int(Some(i32::try_from(int()?).map_err(|e| e.to_string())?)),
        Kind::Bigint => Value::BigInt(Some(int()?)),
        Kind::Double => Value::Double(Some(json.as_f64().ok_or("expected a number")?)),
        Kind::Decimal => Value::Decimal(Some(text()?.parse().map_err(|e| format!("{e}"))?)),
        Kind::Text => Value::String(Some(text()?.to_string())),
        Kind::Bytes => Value::Bytes(Some(BASE64.decode(text()?).map_err(|e| e.to_string())?)),
        Kind::Json => {
            let parsed: JsonValue = serde_json::from_str(text()?).map_err(|e| e.to_string())?;
            Value::Json(Some(Box::new(parsed)))
        }
        Kind::Timestamptz => {
            let t = DateTime::parse_from_rfc3339(text()?).map_err(|e| e.to_string())?;
            Value::ChronoDateTimeUtc(Some(t.with_timezone(&Utc)))
        }
        Kind::Timestamp => Value::ChronoDateTime(Some(
            NaiveDateTime::parse_from_str(text()?, TIME_FORMAT).map_err(|e| e.to_string())?,
        )),
        Kind::Date => Value::ChronoDate(Some(
            NaiveDate::parse_from_str(text()?, "%Y-%m-%d").map_err(|e| e.to_string())?,
        )),
        Kind::Uuid => Value::Uuid(Some(Uuid::parse_str(text()?).map_err(|e| e.to_string())?)),
    })
}

/// A typed NULL: PostgreSQL wants to know what kind of nothing it binds.
fn null_of(kind: Kind) -> Value {
    match kind {
        Kind::Boolean => Value::Bool(None),
        Kind::Smallint => Value::SmallInt(None),
        Kind::Integer => Value::Int(None),
        Kind::Bigint => Value::BigInt(None),
        Kind::Double => Value::Double(None),
        Kind::Decimal => Value::Decimal(None),
        Kind::Text => Value::String(None),
        Kind::Bytes => Value::Bytes(None),
        Kind::Json => Value::Json(None),
        Kind::Timestamptz => Value::ChronoDateTimeUtc(None),
        Kind::Timestamp => Value::ChronoDateTime(None),
        Kind::Date => Value::ChronoDate(None),
        Kind::Uuid => Value::Uuid(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    fn round_trip(kind: Kind, value: Value) -> (JsonValue, Value) {
        let json = encode(value).unwrap();
        let back = decode(kind, &json).unwrap();
        (json, back)
    }

    #[test]
    fn timestamps_are_utc_with_microseconds_and_read_back_exactly() {
        let t = DateTime::parse_from_rfc3339("2026-12-03T18:30:00.000120-03:00")
            .unwrap()
            .with_timezone(&Utc);
        let (json, back) = round_trip(Kind::Timestamptz, Value::ChronoDateTimeUtc(Some(t)));
        assert_eq!(json, json!("2026-12-03T21:30:00.000120Z"));
        assert_eq!(back, Value::ChronoDateTimeUtc(Some(t)));
    }

    #[test]
    fn json_null_and_sql_null_stay_apart() {
        let (json, back) = round_trip(Kind::Json, Value::Json(Some(Box::new(JsonValue::Null))));
        assert_eq!(json, json!("null"));
        assert_eq!(back, Value::Json(Some(Box::new(JsonValue::Null))));

        let (json, back) = round_trip(Kind::Json, Value::Json(None));
        assert_eq!(json, JsonValue::Null);
        assert_eq!(back, Value::Json(None));
    }

    #[test]
    fn decimals_bytes_and_uuids_are_strings() {
        let d: Decimal = "12345.6700".parse().unwrap();
        let (json, back) = round_trip(Kind::Decimal, Value::Decimal(Some(d)));
        assert_eq!(json, json!("12345.6700"));
        assert_eq!(back, Value::Decimal(Some(d)));

        let (json, back) = round_trip(Kind::Bytes, Value::Bytes(Some(vec![0, 255, 7])));
        assert_eq!(json, json!("AP8H"));
        assert_eq!(back, Value::Bytes(Some(vec![0, 255, 7])));

        let id = Uuid::now_v7();
        let (json, back) = round_trip(Kind::Uuid, Value::Uuid(Some(id)));
        assert_eq!(json, json!(id.to_string()));
        assert_eq!(back, Value::Uuid(Some(id)));
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_refused() {
        assert!(decode(Kind::Integer, &json!("12")).is_err());
        assert!(decode(Kind::Integer, &json!(1_i64 << 40)).is_err());
        assert!(decode(Kind::Timestamptz, &json!("yesterday")).is_err());
        assert!(decode(Kind::Boolean, &json!(1)).is_err());
    }
}
