//! Structured logs through `tracing`: pretty for a developer's terminal, JSON
//! lines for production log collectors. With `SENTRY_DSN` set, `ERROR`
//! events (internal errors, logged once in `error`) and panics also go to
//! Sentry, without request data.

use std::borrow::Cow;
use std::sync::Arc;

use sentry::integrations::tracing::{ErrorLayer, SpanLayer};
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, fmt};

use crate::config::{Config, LogFormat};

/// The target of the log line a caught panic leaves; Sentry gets the panic
/// itself from its panic hook, so this line is not reported again.
pub const PANIC_TARGET: &str = "spanglish::panic";

/// Keeps error reporting alive: dropping it (when `main` returns, after the
/// graceful shutdown) sends what is still queued, for up to two seconds.
#[must_use = "error reporting stops when the guard is dropped"]
pub struct Telemetry {
    _sentry: Option<sentry::ClientInitGuard>,
}

/// Installs the global subscriber once; later calls (tests) do nothing.
pub fn init(config: &Config) -> Telemetry {
    let sentry = init_sentry(config);
    let reporting = sentry.is_some();

    let filter = EnvFilter::try_new(&config.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match config.log_format() {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_target(true)
            .boxed(),
        LogFormat::Pretty => fmt::layer().compact().with_target(true).boxed(),
    };

    // The span layer only lends the request span's fields (route, request
    // id, operation) to error events; no trace is sampled or sent. It takes
    // the service's own spans only: accepting every span would switch on the
    // trace-level spans of every library, for all layers.
    let spans = reporting.then(|| SpanLayer::new().with_filter(filter_fn(own_span)));
    let errors = reporting.then(|| {
        ErrorLayer::new().enable_span_attributes().with_filter(
            LevelFilter::ERROR
                .and(filter_fn(|meta| meta.target() != PANIC_TARGET))
                .or(filter_fn(own_span)),
        )
    });

    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .with(errors)
        .try_init();
    Telemetry { _sentry: sentry }
}

fn own_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("spanglish")
}

/// Starts the Sentry client when a DSN is configured. The DSN carries a key:
/// it is never logged.
fn init_sentry(config: &Config) -> Option<sentry::ClientInitGuard> {
    let dsn = config.sentry_dsn.as_ref()?.expose().parse().ok()?;
    // The client's HTTPS stack (reqwest over rustls) needs the process's
    // crypto provider before it is built; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = Some(Cow::Owned(format!(
        "{}@{}",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    )));
    options.environment = Some(Cow::Borrowed(config.app_env.as_str()));
    options.send_default_pii = false;
    options.in_app_include = vec!["spanglish"];
    options.before_send = Some(Arc::new(|event| Some(without_personal_data(event))));
    let guard = sentry::init(options);
    Some(guard)
}

/// Nothing about the request or the caller leaves the process, whatever an
/// integration may have attached: no headers (the bearer token), no body
/// (passwords), no cookies, no user or address.
fn without_personal_data(
    mut event: sentry::protocol::Event<'static>,
) -> sentry::protocol::Event<'static> {
    event.request = None;
    event.user = None;
    event
}
