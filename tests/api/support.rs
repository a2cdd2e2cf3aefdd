//! The test app: starts the service on a fresh database, hands out clients
//! per role, and cleans up after itself.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, EntityTrait, Set};
use serde_json::{Value, json};
use spanglish::accounts::Role;
use spanglish::accounts::entity::user;
use spanglish::app::{App, AppState};
use spanglish::clock::{Clock, ManualClock};
use spanglish::config::{Config, Secret};
use tokio::net::TcpListener;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body on SQLite and on PostgreSQL, as two tests named
/// `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use on_both_databases;

/// Where PostgreSQL tests create their databases. A missing server fails the
/// tests: they are never skipped.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Self {
                    url,
                    pg_name: None,
                    _dir: dir,
                }
            }
            Backend::Postgres => {
                let name = format!("spanglish_test_{}", Uuid::new_v4().simple());
                let admin = Database::connect(postgres_admin_url())
                    .await
                    .expect("PostgreSQL must be running for the tests (TEST_POSTGRES_URL)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                admin.close().await.ok();
                let base = postgres_admin_url();
                let server = base
                    .rsplit_once('/')
                    .map(|(server, _)| server)
                    .unwrap_or(&base);
                Self {
                    url: format!("{server}/{name}"),
                    pg_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any runtime's async context; a thread of its own
        // can block on the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

pub fn test_config(db: &TestDb) -> Config {
    Config {
        database_url: Some(db.url.clone()),
        database_max_connections: 5,
        jwt_secret: Some(Secret::new("test-secret-test-secret-test-secret-32")),
        data_dir: std::env::temp_dir(),
        rust_log: "warn".into(),
        // Tests drive the jobs themselves, so what they count is theirs.
        background_jobs: false,
        // Tests change the database and the clock behind the server's back;
        // the shared answers have tests of their own that turn them on.
        graphql_answer_cache_ms: 0,
        ..Config::default()
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub db: TestDb,
}

pub struct Member {
    pub id: String,
    pub token: String,
    pub refresh: String,
    pub email: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::create(backend).await;
        let mut config = test_config(&db);
        configure(&mut config);

        let clock = ManualClock::new(Utc::now());
        let app = App::build_with_clock(config, clock.clone()).await.unwrap();
        let state = app.state.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(app.serve_on(listener, std::future::pending()));

        Self {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            state,
            clock,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts a GraphQL operation and returns the whole JSON answer.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        response.json().await.unwrap()
    }

    pub async fn register(&self, name: &str, email: &str) -> Member {
        let answer = self
            .gql(
                None,
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id } } }",
                json!({ "input": { "name": name, "email": email, "password": "correct horse battery" } }),
            )
            .await;
        let payload = &answer["data"]["register"];
        assert!(payload.is_object(), "register failed: {answer}");
        Member {
            id: payload["user"]["id"].as_str().unwrap().to_string(),
            token: payload["accessToken"].as_str().unwrap().to_string(),
            refresh: payload["refreshToken"].as_str().unwrap().to_string(),
            email: email.to_string(),
        }
    }

    /// A signed-in user with `role`, set directly in the database as an
    /// admin would.
    pub async fn user_with_role(&self, role: Role) -> Member {
        let email = format!(
            "{}-{}@example.org",
            role.as_str().to_lowercase(),
            Uuid::new_v4().simple()
        );
        let member = self.register(role.as_str(), &email).await;
        if role != Role::Member {
            let id = Uuid::parse_str(&member.id).unwrap();
            let found = user::Entity::find_by_id(id)
                .one(&self.state.db)
                .await
                .unwrap()
                .unwrap();
            let mut model: user::ActiveModel = found.into();
            model.role = Set(role);
            model.update(&self.state.db).await.unwrap();
        }
        member
    }

    /// Many members at once, written straight to the database with one
    /// shared password hash, each with an access token: for load tests,
    /// where hashing sixty passwords would only slow the test down.
    pub async fn members(&self, count: usize) -> Vec<Member> {
        let hash = spanglish::accounts::password::hash("correct horse battery")
            .await
            .unwrap();
        let now = self.clock.now();
        let mut members = Vec::with_capacity(count);
        for i in 0..count {
            let id = Uuid::now_v7();
            let email = format!("member{i}-{}@example.org", id.simple());
            user::ActiveModel {
                id: Set(id),
                name: Set(format!("Member {i}")),
                email: Set(email.clone()),
                email_key: Set(email.clone()),
                search_text: Set(format!("member {i} {email}")),
                password_hash: Set(hash.clone()),
                phone: Set(None),
                locale: Set("es".into()),
                role: Set(Role::Member),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&self.state.db)
            .await
            .unwrap();
            let token = self.state.tokens.issue(id, now).unwrap();
            members.push(Member {
                id: id.to_string(),
                token,
                refresh: String::new(),
                email,
            });
        }
        members
    }

    /// A new access token for `member` as of the test clock's now, for use
    /// after the clock has moved past the old one's fifteen minutes.
    pub fn fresh_token(&self, member: &Member) -> String {
        self.state
            .tokens
            .issue(Uuid::parse_str(&member.id).unwrap(), self.clock.now())
            .unwrap()
    }

    pub async fn audit_actions(&self, target: &str) -> Vec<String> {
        use sea_orm::{ColumnTrait, QueryFilter};
        spanglish::audit::entity::Entity::find()
            .filter(spanglish::audit::entity::Column::Target.eq(target))
            .all(&self.state.db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

/// The `extensions.code` of the first error, or "" when there is none.
pub fn error_code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

pub fn error_field(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or("")
}

/// The real `spanglish` binary serving the test's database: a second (or
/// third) server process, as replicas run in production.
pub struct ServerProcess {
    pub base: String,
    child: std::process::Child,
    log: Option<tempfile::NamedTempFile>,
}

impl ServerProcess {
    pub async fn start(app: &TestApp) -> Self {
        Self::start_with(app, &[]).await
    }

    /// Like `start`, with more settings for the process's environment.
    pub async fn start_with(app: &TestApp, settings: &[(&str, String)]) -> Self {
        Self::launch(app, settings, None).await
    }

    /// Like `start_with`, keeping what the process prints (its logs) for
    /// `output`.
    pub async fn start_capturing(app: &TestApp, settings: &[(&str, String)]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        Self::launch(app, settings, Some(log)).await
    }

    async fn launch(
        app: &TestApp,
        settings: &[(&str, String)],
        log: Option<tempfile::NamedTempFile>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (stdout, stderr) = match &log {
            // One open file for both streams, so they share one offset.
            Some(file) => {
                let out = file.reopen().unwrap();
                let err = out.try_clone().unwrap();
                (out.into(), err.into())
            }
            None => (std::process::Stdio::null(), std::process::Stdio::inherit()),
        };
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_spanglish"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DATABASE_URL", &app.db.url)
            .env(
                "JWT_SECRET",
                app.state.config.jwt_secret.as_ref().unwrap().expose(),
            )
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATA_DIR", std::env::temp_dir())
            .env("RUST_LOG", "warn")
            .env(
                "GRAPHQL_ANSWER_CACHE_MS",
                app.state.config.graphql_answer_cache_ms.to_string(),
            )
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        // Owned at once, so that Drop stops it even when the wait below fails.
        let server = Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        for _ in 0..100 {
            if let Ok(response) = app
                .client
                .get(format!("{}/readyz", server.base))
                .send()
                .await
                && response.status() == 200
            {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the server process did not become ready");
    }

    /// Everything the process printed so far (with `start_capturing`).
    pub fn output(&self) -> String {
        self.log
            .as_ref()
            .map(|file| std::fs::read_to_string(file.path()).unwrap())
            .unwrap_or_default()
    }
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end on its own, up to `limit`.
    pub fn wait_exit(mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
