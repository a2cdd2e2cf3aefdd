//! Limits on authentication attempts, per client address and per email,
//! kept in this process's memory (governor's GCRA). Each attempt counts once,
//! however many of them one GraphQL request carries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{AppError, AppResult};

type FailureLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

pub struct AuthLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    failures_per_email: FailureLimiter,
    /// Emails whose failure quota is spent, until when. Governor cannot tell
    /// "spent" without consuming, and a correct password must not consume.
    locked: Mutex<HashMap<String, Instant>>,
}

const EMAIL_WINDOW: Duration = Duration::from_secs(15 * 60);

impl AuthLimiter {
    pub fn new(per_ip_per_minute: u32, per_email_per_window: u32) -> Self {
        let per_ip = NonZeroU32::new(per_ip_per_minute).unwrap_or(NonZeroU32::MIN);
        let per_email = NonZeroU32::new(per_email_per_window).unwrap_or(NonZeroU32::MIN);
        let email_period = EMAIL_WINDOW / per_email.get();
        let email_quota = Quota::with_period(email_period)
            .unwrap_or_else(|| Quota::per_minute(per_email))
            .allow_burst(per_email);

        Self {
            per_ip: RateLimiter::keyed(Quota::per_minute(per_ip)),
            failures_per_email: RateLimiter::keyed(email_quota)
                .with_middleware::<StateInformationMiddleware>(),
            locked: Mutex::new(HashMap::new()),
        }
    }

    /// One login, registration or password-reset attempt from `ip`.
    pub fn attempt_from(&self, ip: IpAddr) -> AppResult<()> {
        self.per_ip
            .check_key(&ip)
            .map_err(|not_until| limited(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// Refuses a sign-in against `email` while its failures are spent.
    pub fn check_email(&self, email: &str) -> AppResult<()> {
        let key = email.to_lowercase();
        let Ok(mut locked) = self.locked.lock() else {
            return Ok(());
        };
        match locked.get(&key) {
            Some(until) if *until > Instant::now() => Err(limited(*until - Instant::now())),
            Some(_) => {
                locked.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in against `email`. The failure that spends the
    /// quota locks the email for a whole window, so no window of fifteen
    /// minutes sees more failures than the quota.
    pub fn record_failure(&self, email: &str) {
        let key = email.to_lowercase();
        let spent = match self.failures_per_email.check_key(&key) {
            Ok(state) => state.remaining_burst_capacity() == 0,
            Err(_) => true,
        };
        if spent && let Ok(mut locked) = self.locked.lock() {
            locked.insert(key, Instant::now() + EMAIL_WINDOW);
        }
    }

    /// Forgets keys that have fully recovered, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.per_ip.retain_recent();
        self.failures_per_email.retain_recent();
        if let Ok(mut locked) = self.locked.lock() {
            let now = Instant::now();
            locked.retain(|_, until| *until > now);
        }
    }
}

fn limited(wait: Duration) -> AppError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    AppError::RateLimited {
        retry_after: seconds.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_after_the_quota_is_limited_with_a_retry_time() {
        let limiter = AuthLimiter::new(3, 2);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            limiter.attempt_from(ip).unwrap();
        }
        match limiter.attempt_from(ip) {
            Err(AppError::RateLimited { retry_after }) => assert!((1..=60).contains(&retry_after)),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Another address is not affected.
        limiter
            .attempt_from("203.0.113.8".parse().unwrap())
            .unwrap();
    }

    #[test]
    fn an_email_locks_once_its_failures_are_spent_whatever_the_case() {
        let limiter = AuthLimiter::new(100, 2);
        limiter.check_email("ana@example.org").unwrap();
        limiter.record_failure("Ana@Example.org");
        limiter.check_email("ana@example.org").unwrap();
        limiter.record_failure("ana@example.org");
        assert!(limiter.check_email("ANA@EXAMPLE.ORG").is_err());
        limiter.check_email("bea@example.org").unwrap();
    }
}
