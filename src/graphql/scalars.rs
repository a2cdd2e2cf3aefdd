//! Scalars whose wire format the contract fixes.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339. Inputs may carry any offset; outputs are always UTC with `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTimeScalar(pub DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTimeScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
                .map(|t| DateTimeScalar(t.with_timezone(&Utc)))
                .map_err(|_| {
                    InputValueError::custom(format!("\"{s}\" is not an RFC 3339 date-time"))
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
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
    }
}
