//! Amounts as each provider wants them. Inside, money is ISO 4217 minor
//! units; Stripe and MercadoPago each have their own idea of a unit.

use iso_currency::Currency;
use rust_decimal::Decimal;

use crate::money::Money;

/// Currencies Stripe charges in whole units: the amount sent is the amount
/// in the currency itself (PYG 50000 is sent as 50000).
const STRIPE_ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// Currencies Stripe counts in thousandths; the last digit must be zero.
const STRIPE_THREE_DECIMAL: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];

/// Stripe's exponent for a currency. Everything else, ISK included (ISO has
/// no minor unit for it, Stripe still counts it in hundredths), is two.
fn stripe_exponent(currency: Currency) -> u32 {
    let code = currency.code();
    if STRIPE_ZERO_DECIMAL.contains(&code) {
        0
    } else if STRIPE_THREE_DECIMAL.contains(&code) {
        3
    } else {
        2
    }
}

/// The integer `amount` Stripe expects, or `None` when Stripe cannot charge
/// exactly this much (a three-decimal amount not ending in zero).
pub fn to_stripe(money: Money) -> Option<i64> {
    let iso = u32::from(money.currency.exponent().unwrap_or(0));
    let stripe = stripe_exponent(money.currency);
    let amount = if stripe >= iso {
        money.minor.checked_mul(10_i64.pow(stripe - iso))?
    } else {
        let divisor = 10_i64.pow(iso - stripe);
        if money.minor % divisor != 0 {
            return None;
        }
        money.minor / divisor
    };
    if stripe == 3 && amount % 10 != 0 {
        return None;
    }
    Some(amount)
}

/// Stripe's integer back into minor units (for refunds it reports).
pub fn from_stripe(amount: i64, currency: Currency) -> i64 {
    let iso = u32::from(currency.exponent().unwrap_or(0));
    let stripe = stripe_exponent(currency);
    if stripe >= iso {
        amount / 10_i64.pow(stripe - iso)
    } else {
        amount * 10_i64.pow(iso - stripe)
    }
}

/// MercadoPago takes a decimal in the currency's major unit.
pub fn to_mercadopago(money: Money) -> Decimal {
    money.amount()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(minor: i64, code: &str) -> Money {
        Money::from_minor(minor, code).unwrap()
    }

    #[test]
    fn guaranies_go_to_stripe_as_is_and_dollars_in_cents() {
        assert_eq!(to_stripe(money(50_000, "PYG")), Some(50_000));
        assert_eq!(to_stripe(money(1250, "USD")), Some(1250));
        assert_eq!(to_stripe(money(9_990, "CLP")), Some(9_990));
        assert_eq!(to_stripe(money(500, "JPY")), Some(500));
    }

    #[test]
    fn stripe_special_cases() {
        // ISK: no ISO minor unit, but Stripe counts hundredths.
        assert_eq!(to_stripe(money(1000, "ISK")), Some(100_000));
        assert_eq!(from_stripe(100_000, Currency::ISK), 1000);
        // Three-decimal currencies must end in zero.
        assert_eq!(to_stripe(money(1230, "KWD")), Some(1230));
        assert_eq!(to_stripe(money(1234, "KWD")), None);
    }

    #[test]
    fn mercadopago_takes_major_units() {
        assert_eq!(to_mercadopago(money(50_000, "PYG")).to_string(), "50000");
        assert_eq!(to_mercadopago(money(1250, "USD")).to_string(), "12.50");
    }
}
