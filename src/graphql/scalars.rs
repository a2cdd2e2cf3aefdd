//! Scalars whose wire format the contract fixes.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Timelike, Utc};

/// RFC 3339. Inputs may carry any offset; outputs are always UTC with `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTimeScalar(pub DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTimeScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(s) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        let invalid = || InputValueError::custom(format!("\"{s}\" is not an RFC 3339 date-time"));
        let parsed = DateTime::parse_from_rfc3339(s.trim()).map_err(|_| invalid())?;

        // A leap second (":60") has no place in a schedule; and the databases
        // keep microseconds, so anything finer is dropped here rather than
        // differ between SQLite and PostgreSQL.
        if parsed.nanosecond() >= 1_000_000_000 {
            return Err(invalid());
        }
        let utc = parsed.with_timezone(&Utc);
        let micros = utc
            .duration_trunc(Duration::microseconds(1))
            .map_err(|_| invalid())?;
        Ok(DateTimeScalar(micros))
    }

    /// Checked during validation too, so a bad value is reported with the
    /// argument that holds it.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<DateTime<Utc>> for DateTimeScalar {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_offset_in_utc_out() {
        let parsed =
            DateTimeScalar::parse(Value::String("2026-12-24T20:00:00-03:00".into())).unwrap();
        assert_eq!(
            parsed.to_value(),
            Value::String("2026-12-24T23:00:00Z".into())
        );
        assert!(DateTimeScalar::parse(Value::String("24/12/2026".into())).is_err());
        assert!(DateTimeScalar::parse(Value::String("2028-01-01T12:00:60Z".into())).is_err());
        let fine =
            DateTimeScalar::parse(Value::String("2028-01-01T10:00:00.123456789Z".into())).unwrap();
        assert_eq!(
            fine.to_value(),
            Value::String("2028-01-01T10:00:00.123456Z".into())
        );
    }
}
