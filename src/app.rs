//! Assembles the service: configuration in, a ready router and its shared
//! state out. `serve`, the CLI commands and the tests all start here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use ipnet::IpNet;
use tokio::net::TcpListener;

use crate::accounts::tokens::{self, TokenKeys};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::db::{self, Db};
use crate::email::transport::Transport;
use crate::graphql::{self, AppSchema};
use crate::http;
use crate::media::storage::{self, SharedStorage};
use crate::payments::gateways::Gateways;
use crate::rate_limit::AuthLimiter;
use crate::tickets::codes::TicketSigner;

/// What every request handler and background task shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub clock: SharedClock,
    pub tokens: Arc<TokenKeys>,
    pub limiter: Arc<AuthLimiter>,
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub signer: Arc<TicketSigner>,
    pub gateways: Arc<Gateways>,
    pub mailer: Arc<Transport>,
    /// Where media files live (`MEDIA_STORAGE`).
    pub storage: SharedStorage,
    /// SQL statements run through this pool; tests use it to prove that a
    /// list costs a bounded number of queries.
    pub statements: Arc<AtomicU64>,
}

pub struct App {
    pub state: AppState,
    pub schema: AppSchema,
}

impl App {
    /// Connects, migrates and builds the schema, with the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        config.validate()?;
        // Outbound TLS (payment and email providers) uses ring; installing it
        // twice (tests build many apps) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secret = tokens::load_or_create_dev_secret(&config)?;
        let mut db = db::connect(&config.database_url(), config.database_max_connections)
            .await
            .context("connecting to the database (DATABASE_URL)")?;
        db::migrate(&db).await.context("migrating the database")?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        db.set_metric_callback(move |info| {
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(target: "spanglish::sql", sql = %info.statement.sql, elapsed_us = info.elapsed.as_micros() as u64);
        });

        let state = AppState {
            tokens: Arc::new(TokenKeys::new(&secret)?),
            limiter: Arc::new(AuthLimiter::new(
                config.rate_limit_auth_per_ip,
                config.rate_limit_login_per_email,
            )),
            trusted_proxies: Arc::new(config.trusted_proxy_nets()?),
            signer: Arc::new(TicketSigner::from_secret(&secret)),
            gateways: Arc::new(Gateways::from_config(&config)?),
            mailer: Arc::new(Transport::from_config(&config)?),
            storage: storage::from_config(&config)?,
            statements,
            config: Arc::new(config),
            db,
            clock,
        };
        let schema = graphql::build(&state.config).data(state.clone()).finish();
        Ok(Self { state, schema })
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone(), self.schema.clone())
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish
    /// for up to `SHUTDOWN_TIMEOUT_SECONDS`.
    pub async fn serve(self) -> anyhow::Result<()> {
        let address = format!("{}:{}", self.state.config.host, self.state.config.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        tracing::info!(%address, env = self.state.config.app_env.as_str(), "serving the Spanglish API");
        self.serve_on(listener, shutdown_signal()).await
    }

    pub async fn serve_on(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.state.config.shutdown_timeout_seconds);
        let jobs = self.state.config.background_jobs;
        let background = jobs.then(|| spawn_background_tasks(&self.state));
        let mail =
            jobs.then(|| tokio::spawn(crate::email::worker::run_forever(self.state.clone())));
        let router = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });

        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            result = &mut server => result?,
            _ = async { let _ = stopping_rx.await; tokio::time::sleep(grace).await } => {
                tracing::warn!(seconds = grace.as_secs(), "requests still running after the shutdown grace period; stopping anyway");
            }
        }
        for job in [background, mail].into_iter().flatten() {
            job.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Periodic chores. Each is safe when every replica runs it: hold expiry is
/// one conditional UPDATE, reconciliation goes through the same locked,
/// forward-only paths as webhooks, and rate-limit memory is per process.
fn spawn_background_tasks(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            expire_holds(&state).await;
            rounds += 1;
            if rounds.is_multiple_of(20) {
                reconcile_payments(&state).await;
            }
            if rounds.is_multiple_of(4) {
                state.limiter.forget_idle();
            }
        }
    })
}

/// Every five minutes: the webhooks that never came, the refunds that were
/// interrupted.
async fn reconcile_payments(state: &AppState) {
    if let Err(err) = crate::payments::reconcile::run(state).await {
        tracing::error!(error = %err, "reconciling payments");
    }
}

async fn expire_holds(state: &AppState) {
    match crate::tickets::service::expire_holds(&state.db, state.clock.now()).await {
        Ok(0) => {}
        Ok(expired) => {
            metrics::counter!("ticket_holds_expired_total").increment(expired);
            tracing::info!(expired, "ticket holds expired");
        }
        Err(err) => tracing::error!(error = %err, "expiring ticket holds"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
