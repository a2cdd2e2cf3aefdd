//! Money: an integer number of minor units and an ISO 4217 currency. Floats
//! never carry money; outside the server an amount is a decimal string.

use std::str::FromStr;

use async_graphql::{
    InputObject, InputValueError, InputValueResult, Scalar, ScalarType, SimpleObject, Value,
};
use iso_currency::Currency;
use rust_decimal::Decimal;

use crate::error::AppError;

/// The contract's `Decimal` scalar: a decimal number written as a string.
/// Unlike a JSON number, a string cannot lose precision on its way here, so
/// number literals are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalScalar(pub Decimal);

#[Scalar(name = "Decimal")]
impl ScalarType for DecimalScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Decimal::from_str(s.trim())
                .map(DecimalScalar)
                .map_err(|_| InputValueError::custom(format!("\"{s}\" is not a decimal number"))),
            Value::Number(_) => Err(InputValueError::custom(
                "write amounts as strings, e.g. \"12.50\": a JSON number may lose precision",
            )),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    /// Checked during validation too, so a bad value is reported with the
    /// argument that holds it.
    fn is_valid(value: &Value) -> bool {
        Self::parse(value.clone()).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// Builds money from an amount as people write it, refusing more decimals
    /// than the currency has (50000.5 PYG) and negative amounts. `field` names
    /// the input at fault in the error.
    pub fn from_decimal(amount: Decimal, code: &str, field: &str) -> Result<Self, AppError> {
        let currency = parse_currency(code, field)?;
        let exponent = minor_exponent(currency).ok_or_else(|| {
            AppError::bad_input(
                field,
                format!("{code} is not a currency that can price a ticket"),
            )
        })?;

        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(AppError::bad_input(field, "the amount cannot be negative"));
        }
        let normalized = amount.normalize();
        if normalized.scale() > exponent {
            let message = match exponent {
                0 => format!(
                    "{} has no minor unit: the amount must be a whole number",
                    currency.code()
                ),
                n => format!("{} allows at most {n} decimals", currency.code()),
            };
            return Err(AppError::bad_input(field, message));
        }

        let too_large = || AppError::bad_input(field, "the amount is too large");
        let minor = normalized
            .checked_mul(Decimal::from(10_i64.pow(exponent)))
            .ok_or_else(too_large)?
            .trunc()
            .to_string()
            .parse::<i64>()
            .map_err(|_| too_large())?;
        Ok(Self { minor, currency })
    }

    /// Rebuilds money read from the database.
    pub fn from_minor(minor: i64, code: &str) -> Option<Self> {
        let currency = Currency::from_code(code)?;
        Some(Self { minor, currency })
    }

    pub fn amount(&self) -> Decimal {
        let exponent = minor_exponent(self.currency).unwrap_or(0);
        Decimal::new(self.minor, exponent)
    }

    pub fn code(&self) -> &'static str {
        self.currency.code()
    }
}

fn parse_currency(code: &str, field: &str) -> Result<Currency, AppError> {
    let upper = code.trim().to_ascii_uppercase();
    Currency::from_code(&upper).ok_or_else(|| {
        AppError::bad_input(field, format!("{code} is not an ISO 4217 currency code"))
    })
}

/// The number of decimals of the currency's minor unit, per ISO 4217. Funds
/// and metals (XAU) have none defined and cannot price anything.
fn minor_exponent(currency: Currency) -> Option<u32> {
    currency.exponent().map(u32::from)
}

#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "Money")]
pub struct MoneyObject {
    pub amount: DecimalScalar,
    /// ISO 4217 code, e.g. "PYG", "USD".
    pub currency: String,
}

impl From<Money> for MoneyObject {
    fn from(money: Money) -> Self {
        Self {
            amount: DecimalScalar(money.amount()),
            currency: money.code().to_string(),
        }
    }
}

#[derive(Debug, Clone, InputObject)]
#[graphql(name = "MoneyInput")]
pub struct MoneyInput {
    pub amount: DecimalScalar,
    pub currency: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn guaranies_have_no_minor_unit() {
        assert_eq!(
            Money::from_decimal(dec("50000"), "PYG", "price")
                .unwrap()
                .minor,
            50_000
        );
        assert!(Money::from_decimal(dec("50000.5"), "PYG", "price").is_err());
        assert!(Money::from_decimal(dec("1000.0"), "CLP", "price").is_ok());
        assert!(Money::from_decimal(dec("1000.5"), "CLP", "price").is_err());
    }

    #[test]
    fn dollars_have_two_decimals_and_dinars_three() {
        assert_eq!(
            Money::from_decimal(dec("12.50"), "USD", "price")
                .unwrap()
                .minor,
            1250
        );
        assert!(Money::from_decimal(dec("12.505"), "USD", "price").is_err());
        assert_eq!(
            Money::from_decimal(dec("1.234"), "KWD", "price")
                .unwrap()
                .minor,
            1234
        );
        assert!(Money::from_decimal(dec("1.2345"), "KWD", "price").is_err());
    }

    #[test]
    fn negative_amounts_and_unknown_currencies_are_refused() {
        assert!(Money::from_decimal(dec("-1"), "USD", "price").is_err());
        assert!(Money::from_decimal(dec("1"), "ABC", "price").is_err());
        assert!(Money::from_decimal(dec("1"), "XAU", "price").is_err());
    }

    #[test]
    fn amounts_read_back_with_the_currency_scale() {
        let usd = Money::from_minor(1250, "USD").unwrap();
        assert_eq!(usd.amount().to_string(), "12.50");
        let pyg = Money::from_minor(50_000, "PYG").unwrap();
        assert_eq!(pyg.amount().to_string(), "50000");
    }

    #[test]
    fn huge_amounts_are_refused_not_overflowed() {
        assert!(Money::from_decimal(dec("79228162514264337593543950335"), "USD", "price").is_err());
        assert!(Money::from_decimal(dec("7922816251426433759354395033"), "KWD", "price").is_err());
        assert!(Money::from_decimal(dec("92233720368547758.08"), "USD", "price").is_err());
    }

    #[test]
    fn lower_case_codes_are_accepted() {
        assert_eq!(
            Money::from_decimal(dec("5"), "usd", "price")
                .unwrap()
                .code(),
            "USD"
        );
    }
}
