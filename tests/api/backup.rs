//! Backups and restores: every row of every table survives SQLite → SQLite,
//! SQLite → PostgreSQL, PostgreSQL → SQLite and PostgreSQL → PostgreSQL; the
//! restored server works; a wrong key, a damaged file, a newer schema and a
//! non-empty target are refused with the target left as it was; S3 and the
//! real binary work too.

use std::io::Cursor;
use std::path::PathBuf;
use std::process::Command;

use chrono::Duration;
use image::{DynamicImage, ImageFormat};
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, Set, Statement};
use serde_json::{Value, json};
use spanglish::accounts::Role;
use spanglish::backup::{self, BackupError, Location};
use spanglish::clock::Clock;
use spanglish::config::{Config, Secret};
use spanglish::db::{self, Db};
use tempfile::TempDir;
use uuid::Uuid;

use crate::events::{create_event, event_input};
use crate::support::{Backend, Member, TestApp, TestDb, on_both_databases};

const PASSWORD: &str = "correct horse battery";

/// A key pair for the test: the recipient and the secret key itself.
struct Keys {
    recipient: String,
    identity: String,
}

fn keys() -> Keys {
    let (file, recipient) = backup::crypto::keygen(chrono::Utc::now());
    let identity = file
        .lines()
        .find(|line| line.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    Keys {
        recipient,
        identity,
    }
}

fn config(keys: &Keys) -> Config {
    Config {
        backup_recipient: vec![keys.recipient.clone()],
        backup_identity: Some(Secret::new(keys.identity.clone())),
        ..Config::default()
    }
}

/// What the seed leaves for the checks after a restore.
struct Seeded {
    member: Member,
    confirmed_ticket: String,
    code: String,
    _media: TempDir,
}

/// A PNG of the given size, as an organizer would upload for a banner.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::new_rgb8(width, height)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

async fn upload_banner(app: &TestApp, token: &str) -> String {
    let mut body = b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"banner.png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
    body.extend_from_slice(&png(320, 100));
    body.extend_from_slice(b"\r\n--XB--\r\n");
    let response = app
        .client
        .post(app.url("/api/media/upload"))
        .header("content-type", "multipart/form-data; boundary=XB")
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let media: Value = response.json().await.unwrap();
    media["id"].as_str().unwrap().to_string()
}

async fn ok(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let answer = app.gql(Some(token), query, variables).await;
    assert!(answer["errors"].is_null(), "{query}: {answer}");
    answer["data"].clone()
}

async fn published_event(app: &TestApp, token: &str, title: &str, price: Option<&str>) -> String {
    let starts = app.clock.now() + Duration::days(2);
    let mut input = event_input(title);
    input["startsAt"] = json!(starts.to_rfc3339());
    input["endsAt"] = json!((starts + Duration::hours(3)).to_rfc3339());
    input["status"] = json!("PUBLISHED");
    if let Some(amount) = price {
        input["price"] = json!({ "amount": amount, "currency": "PYG" });
    }
    create_event(app, token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn book(app: &TestApp, member: &Member, event: &str) -> Value {
    ok(
        app,
        &member.token,
        "mutation($e: ID!) { bookTicket(eventId: $e) { id status code } }",
        json!({ "e": event }),
    )
    .await["bookTicket"]
        .clone()
}

/// Users of every role, a banner, free and paid events, tickets confirmed
/// and checked in, pending, cancelled and paid then partly refunded, a
/// password reset, emails, refresh tokens, audit entries and a large webhook
/// payload (random, so the encrypted file spans several age chunks and
/// damage in its middle is found while rows are being loaded).
async fn seed(app: &TestApp, media: TempDir) -> Seeded {
    let admin = app.user_with_role(Role::Admin).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let staff = app.user_with_role(Role::Staff).await;
    let member = app.register("Élodie Núñez", "elodie@example.org").await;
    let others = app.members(3).await;

    let banner = upload_banner(app, &organizer.token).await;
    let mut input = event_input("Intercambio con banner");
    input["bannerId"] = json!(banner);
    input["status"] = json!("PUBLISHED");
    let starts = app.clock.now() + Duration::days(1);
    input["startsAt"] = json!(starts.to_rfc3339());
    input["endsAt"] = json!((starts + Duration::hours(2)).to_rfc3339());
    let free = create_event(app, &organizer.token, input).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let paid = published_event(app, &organizer.token, "Noche de pago", Some("50000")).await;

    let confirmed = book(app, &member, &free).await;
    assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed}");
    let code = confirmed["code"].as_str().unwrap().to_string();
    ok(
        app,
        &staff.token,
        "mutation($c: String!) { checkIn(code: $c) { alreadyCheckedIn } }",
        json!({ "c": code }),
    )
    .await;

    let pending = book(app, &others[0], &paid).await;
    assert_eq!(pending["status"], "PENDING");
    let cancelled = book(app, &others[1], &paid).await;
    ok(
        app,
        &others[1].token,
        "mutation($id: ID!) { cancelTicket(id: $id) { status } }",
        json!({ "id": cancelled["id"] }),
    )
    .await;

    let paid_ticket = book(app, &others[2], &paid).await;
    let payment = ok(
        app,
        &others[2].token,
        "mutation($t: ID!) { initiatePayment(ticketId: $t, provider: MANUAL) { payment { id } } }",
        json!({ "t": paid_ticket["id"] }),
    )
    .await["initiatePayment"]["payment"]["id"]
        .clone();
    ok(
        app,
        &organizer.token,
        "mutation($id: ID!) { confirmManualPayment(id: $id, reference: \"efectivo\") { status } }",
        json!({ "id": payment }),
    )
    .await;
    let refunded = ok(
        app,
        &admin.token,
        "mutation($id: ID!) { refundPayment(id: $id, amount: \"20000\") { status } }",
        json!({ "id": payment }),
    )
    .await;
    assert_eq!(refunded["refundPayment"]["status"], "PARTIALLY_REFUNDED");

    app.gql(
        None,
        "mutation { requestPasswordReset(email: \"elodie@example.org\") }",
        json!({}),
    )
    .await;
    ok(
        app,
        &admin.token,
        "mutation($e: ID!) { sendEmail(input: { subject: \"¡Hola!\", body: \"Nos vemos\", eventId: $e }) { queued } }",
        json!({ "e": free }),
    )
    .await;

    let mut noise = vec![0u8; 256 * 1024];
    rand::rng().fill_bytes(&mut noise);
    spanglish::payments::entity::webhook_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        provider: Set("STRIPE".into()),
        provider_event_id: Set("evt_big".into()),
        payload: Set(hex::encode(noise)),
        received_at: Set(app.clock.now()),
        processed_at: Set(None),
        outcome: Set(Some("ignored".into())),
    }
    .insert(&app.state.db)
    .await
    .unwrap();

    Seeded {
        member,
        confirmed_ticket: confirmed["id"].as_str().unwrap().to_string(),
        code,
        _media: media,
    }
}

async fn seeded_app(backend: Backend) -> (TestApp, Seeded) {
    let media = TempDir::new().unwrap();
    let dir = media.path().to_path_buf();
    let app = TestApp::spawn_with(backend, move |c| c.media_dir = dir).await;
    let seeded = seed(&app, media).await;
    (app, seeded)
}

/// Every row of every entity, read back as typed models, in id order.
async fn models(db: &Db) -> Vec<String> {
    macro_rules! rows {
        ($($entity:ident),* $(,)?) => {
            vec![$(
                format!(
                    "{:?}",
                    $entity::Entity::find()
                        .order_by_asc($entity::Column::Id)
                        .all(db)
                        .await
                        .unwrap()
                ),
            )*]
        };
    }
    use spanglish::accounts::entity::{password_reset, refresh_token, user};
    use spanglish::audit::entity as audit;
    use spanglish::email::entity as email;
    use spanglish::events::entity as event;
    use spanglish::media::entity as media;
    use spanglish::payments::entity::{payment, refund, webhook_event};
    use spanglish::tickets::entity as ticket;
    rows!(
        user,
        refresh_token,
        password_reset,
        media,
        event,
        ticket,
        payment,
        refund,
        webhook_event,
        email,
        audit
    )
}

/// Every table as the database stores it: SQLite's `quote()` of each column
/// (so storage classes and timestamp text count too), PostgreSQL's
/// `row_to_json`. Only comparable between two databases of one kind.
async fn raw(db: &Db) -> Vec<(String, Vec<String>)> {
    let mut tables = Vec::new();
    for table in backup::snapshot::database_tables(db).await.unwrap() {
        if table == backup::snapshot::MIGRATIONS_TABLE {
            continue;
        }
        let sql = if db::is_postgres(db) {
            format!("SELECT row_to_json(t)::text AS r FROM \"{table}\" t ORDER BY r")
        } else {
            let columns = strings(
                db,
                &format!("SELECT name AS r FROM pragma_table_info('{table}') ORDER BY cid"),
            )
            .await;
            let quoted: Vec<String> = columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
            format!(
                "SELECT {} AS r FROM \"{table}\" ORDER BY r",
                quoted.join(" || '|' || ")
            )
        };
        tables.push((table, strings(db, &sql).await));
    }
    tables
}

async fn strings(db: &Db, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "r").unwrap())
        .collect()
}

async fn connect(target: &TestDb) -> Db {
    db::connect(&target.url, 2).await.unwrap()
}

/// The tables of `db` that exist at all, and those with rows.
async fn tables_and_rows(db: &Db) -> (Vec<String>, Vec<String>) {
    let tables = backup::snapshot::database_tables(db).await.unwrap();
    let mut with_rows = Vec::new();
    for table in &tables {
        let count = strings(
            db,
            &format!("SELECT CAST(COUNT(*) AS TEXT) AS r FROM \"{table}\""),
        )
        .await;
        if count[0] != "0" && table != backup::snapshot::MIGRATIONS_TABLE {
            with_rows.push(table.clone());
        }
    }
    (tables, with_rows)
}

fn file_in(dir: &TempDir) -> Location {
    Location::File(dir.path().join("spanglish.backup"))
}

fn path_of(location: &Location) -> PathBuf {
    match location {
        Location::File(path) => path.clone(),
        Location::S3 { .. } => unreachable!("a file location"),
    }
}

/// A server on the restored database: the member signs in with their
/// password, sees their checked-in ticket with its code, and their refresh
/// token from before the backup still turns.
async fn check_restored_server(target: Backend, url: &str, seeded: &Seeded) {
    let url = url.to_string();
    let app = TestApp::spawn_with(target, move |c| c.database_url = Some(url)).await;
    let login: Value = app
        .client
        .post(app.url("/api/auth/login"))
        .json(&json!({ "email": "elodie@example.org", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().expect("the member signs in");
    let ticket = ok(
        &app,
        token,
        "query($id: ID!) { ticket(id: $id) { status code checkedInAt event { title banner { width } } } }",
        json!({ "id": seeded.confirmed_ticket }),
    )
    .await;
    assert_eq!(ticket["ticket"]["status"], "CONFIRMED", "{ticket}");
    assert_eq!(ticket["ticket"]["code"], seeded.code.as_str());
    assert!(ticket["ticket"]["checkedInAt"].is_string(), "{ticket}");
    assert_eq!(ticket["ticket"]["event"]["banner"]["width"], 320);

    let rotated = app
        .gql(
            None,
            "mutation($r: String!) { refreshToken(refreshToken: $r) { accessToken } }",
            json!({ "r": seeded.member.refresh }),
        )
        .await;
    assert!(rotated["errors"].is_null(), "{rotated}");
}

/// A backup of `source` restores into a fresh SQLite file and into a
/// migrated, empty PostgreSQL database with every row of every table equal,
/// read as typed models; into the same kind, stored byte for byte alike
/// (across kinds, after a trip there and back); and a server on the copy
/// works.
async fn every_row_survives_a_round_trip_to_both_databases(source: Backend) {
    let keys = keys();
    let config = config(&keys);
    let (app, seeded) = seeded_app(source).await;
    let dir = TempDir::new().unwrap();
    let location = file_in(&dir);

    let written = backup::backup(&app.state.db, &location, &config)
        .await
        .unwrap();
    assert_eq!(written.counts.len(), 11, "{:?}", written.counts);
    assert_eq!(written.counts["webhook_events"], 1);
    assert_eq!(written.counts["refunds"], 1);
    assert!(
        written.counts.values().all(|n| *n > 0),
        "{:?}",
        written.counts
    );
    let before = models(&app.state.db).await;

    for target in [Backend::Sqlite, Backend::Postgres] {
        let restored = TestDb::create(target).await;
        let db = connect(&restored).await;
        if target == Backend::Postgres {
            // As a server that started once would leave it: migrated, empty.
            db::migrate(&db).await.unwrap();
        }
        let loaded = backup::restore(&db, &location, &config).await.unwrap();
        assert_eq!(loaded.counts, written.counts);

        assert_eq!(models(&db).await, before, "{source:?} → {target:?}");
        if target == source {
            assert_eq!(
                raw(&db).await,
                raw(&app.state.db).await,
                "{source:?} → {target:?}"
            );
        } else {
            // Across kinds, back again: the second copy of the source's kind
            // stores exactly what the source stores.
            let again = TempDir::new().unwrap();
            backup::backup(&db, &file_in(&again), &config)
                .await
                .unwrap();
            let home = TestDb::create(source).await;
            let home_db = connect(&home).await;
            backup::restore(&home_db, &file_in(&again), &config)
                .await
                .unwrap();
            assert_eq!(
                raw(&home_db).await,
                raw(&app.state.db).await,
                "{source:?} → {target:?} → back"
            );
        }
        check_restored_server(target, &restored.url, &seeded).await;
    }
}

async fn a_wrong_key_is_refused_and_the_target_stays_empty(backend: Backend) {
    let (app, _seeded) = seeded_app(backend).await;
    let dir = TempDir::new().unwrap();
    let location = file_in(&dir);
    backup::backup(&app.state.db, &location, &config(&keys()))
        .await
        .unwrap();

    let target = TestDb::create(backend).await;
    let db = connect(&target).await;
    let err = backup::restore(&db, &location, &config(&keys()))
        .await
        .err()
        .unwrap();

    assert!(matches!(err, BackupError::WrongKey), "{err}");
    assert_eq!(
        err.to_string(),
        "this backup was not encrypted to BACKUP_IDENTITY's recipient"
    );
    assert_eq!(
        tables_and_rows(&db).await,
        (vec![], vec![]),
        "not even migrated"
    );
}

/// A truncated file restored into a fresh database leaves it without a
/// table; a file with one flipped byte restored into a migrated, empty one
/// leaves it migrated and empty. Either way nothing was half loaded.
async fn a_damaged_file_is_refused_and_the_target_stays_untouched(backend: Backend) {
    let keys = keys();
    let config = config(&keys);
    let (app, _seeded) = seeded_app(backend).await;
    let dir = TempDir::new().unwrap();
    let location = file_in(&dir);
    backup::backup(&app.state.db, &location, &config)
        .await
        .unwrap();
    let bytes = std::fs::read(path_of(&location)).unwrap();
    assert!(
        bytes.len() > 3 * 64 * 1024,
        "several age chunks: {}",
        bytes.len()
    );

    let truncated = dir.path().join("truncated");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let fresh = TestDb::create(backend).await;
    let fresh_db = connect(&fresh).await;
    let err = backup::restore(&fresh_db, &Location::File(truncated), &config)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, BackupError::Corrupted(_)), "{err}");
    assert!(err.to_string().contains("truncated or corrupted"), "{err}");
    assert_eq!(tables_and_rows(&fresh_db).await, (vec![], vec![]));

    let mut flipped_bytes = bytes.clone();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] ^= 0x01;
    let flipped = dir.path().join("flipped");
    std::fs::write(&flipped, &flipped_bytes).unwrap();
    let migrated = TestDb::create(backend).await;
    let migrated_db = connect(&migrated).await;
    db::migrate(&migrated_db).await.unwrap();
    let tables_before = tables_and_rows(&migrated_db).await;
    let err = backup::restore(&migrated_db, &Location::File(flipped), &config)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, BackupError::Corrupted(_)), "{err}");
    assert_eq!(tables_and_rows(&migrated_db).await, tables_before);
    assert!(tables_before.1.is_empty());
}

async fn a_database_with_rows_is_refused_and_left_unchanged(backend: Backend) {
    let keys = keys();
    let config = config(&keys);
    let (app, _seeded) = seeded_app(backend).await;
    let dir = TempDir::new().unwrap();
    let location = file_in(&dir);
    backup::backup(&app.state.db, &location, &config)
        .await
        .unwrap();

    let other = TestApp::spawn(backend).await;
    other.register("Ana", "ana@example.org").await;
    let before = raw(&other.state.db).await;
    let err = backup::restore(&other.state.db, &location, &config)
        .await
        .err()
        .unwrap();

    assert!(matches!(err, BackupError::NotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(raw(&other.state.db).await, before);
}

async fn a_backup_of_a_newer_schema_is_refused(backend: Backend) {
    let keys = keys();
    let config = config(&keys);
    let dir = TempDir::new().unwrap();
    let mut migrations = backup::snapshot::known_migrations();
    migrations.push("m20991231_000001_from_the_future".into());
    let location = crafted(&dir, &config, migrations, &[]);

    let target = TestDb::create(backend).await;
    let db = connect(&target).await;
    let err = backup::restore(&db, &location, &config)
        .await
        .err()
        .unwrap();

    assert!(matches!(err, BackupError::NewerSchema(_)), "{err}");
    assert!(
        err.to_string().contains("m20991231_000001_from_the_future"),
        "{err}"
    );
    assert!(err.to_string().contains("newer schema"), "{err}");
    assert_eq!(tables_and_rows(&db).await, (vec![], vec![]));
}

/// Any file that is not age, and an age file that holds something else.
async fn a_file_that_is_not_a_backup_is_refused(backend: Backend) {
    let keys = keys();
    let config = config(&keys);
    let dir = TempDir::new().unwrap();
    let plain = dir.path().join("notes.txt");
    std::fs::write(&plain, "dump of something else\n").unwrap();
    let sealed = dir.path().join("notes.age");
    let recipients = backup::Recipients::parse(&config.backup_recipient).unwrap();
    let mut writer = recipients
        .encrypt(std::fs::File::create(&sealed).unwrap())
        .unwrap();
    std::io::Write::write_all(&mut writer, b"{\"hello\": \"world\"}\n").unwrap();
    writer.finish().unwrap();

    let target = TestDb::create(backend).await;
    let db = connect(&target).await;
    for file in [plain, sealed] {
        let err = backup::restore(&db, &Location::File(file), &config)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, BackupError::NotABackup(_)), "{err}");
        assert!(
            err.to_string().starts_with("not a Spanglish backup"),
            "{err}"
        );
    }
    assert_eq!(tables_and_rows(&db).await, (vec![], vec![]));
}

/// A backup written by `backup`'s own writer with the given rows.
fn crafted(
    dir: &TempDir,
    config: &Config,
    migrations: Vec<String>,
    rows: &[(&str, Value)],
) -> Location {
    let path = dir.path().join("crafted.backup");
    let header = backup::Header {
        format: backup::format::FORMAT_NAME.into(),
        format_version: backup::format::FORMAT_VERSION,
        app_version: "9.0.0".into(),
        source: "postgres".into(),
        migrations,
        created_at: chrono::Utc::now(),
        tables: backup::snapshot::schemas().unwrap(),
    };
    let recipients = backup::Recipients::parse(&config.backup_recipient).unwrap();
    let mut writer = backup::archive::Writer::create(dir.path(), &recipients, &header).unwrap();
    for (table, row) in rows {
        writer.row(table, row.as_object().unwrap().clone()).unwrap();
    }
    writer.finish().unwrap().persist(&path).unwrap();
    Location::File(path)
}

/// A user, then a refresh token of a user who does not exist: the database
/// refuses the second row, and the first goes too.
async fn a_row_the_database_refuses_rolls_everything_back(backend: Backend) {
    let keys = keys();
    let config = config(&keys);
    let dir = TempDir::new().unwrap();
    let now = "2026-12-03T18:30:00.000000Z";
    let user = json!({
        "id": Uuid::now_v7().to_string(), "name": "Ana", "email": "ana@example.org",
        "email_key": "ana@example.org", "search_text": "ana ana@example.org",
        "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "phone": null,
        "locale": "es", "role": "MEMBER", "created_at": now, "updated_at": now,
    });
    let orphan = json!({
        "id": Uuid::now_v7().to_string(), "user_id": Uuid::now_v7().to_string(),
        "family_id": Uuid::now_v7().to_string(), "token_hash": "abc", "created_at": now,
        "expires_at": now, "used_at": null, "revoked_at": null,
    });
    let location = crafted(
        &dir,
        &config,
        backup::snapshot::known_migrations(),
        &[("users", user), ("refresh_tokens", orphan)],
    );

    let target = TestDb::create(backend).await;
    let db = connect(&target).await;
    let err = backup::restore(&db, &location, &config)
        .await
        .err()
        .unwrap();

    assert!(matches!(err, BackupError::Db(_)), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("foreign key"),
        "{err}"
    );
    assert_eq!(
        tables_and_rows(&db).await,
        (vec![], vec![]),
        "not even migrated"
    );
}

/// The tables the migrations create are exactly the ones backed up, with
/// the same columns, listed after every table they point to.
async fn every_table_of_the_migrations_is_backed_up(backend: Backend) {
    let target = TestDb::create(backend).await;
    let db = connect(&target).await;
    db::migrate(&db).await.unwrap();

    let schemas = backup::snapshot::schemas().unwrap();
    let mut backed_up: Vec<String> = schemas.iter().map(|t| t.name.clone()).collect();
    backed_up.sort();
    let mut created = backup::snapshot::database_tables(&db).await.unwrap();
    created.retain(|t| t != backup::snapshot::MIGRATIONS_TABLE);
    assert_eq!(
        backed_up, created,
        "a table is missing from backup::snapshot::tables()"
    );

    for (position, table) in schemas.iter().enumerate() {
        let (columns, references) = if db::is_postgres(&db) {
            (
                format!(
                    "SELECT column_name::text AS r FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = '{}' ORDER BY 1",
                    table.name
                ),
                format!(
                    "SELECT DISTINCT ccu.table_name::text AS r \
                     FROM information_schema.table_constraints tc \
                     JOIN information_schema.constraint_column_usage ccu \
                       ON ccu.constraint_name = tc.constraint_name \
                     WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_name = '{}'",
                    table.name
                ),
            )
        } else {
            (
                format!(
                    "SELECT name AS r FROM pragma_table_info('{}') ORDER BY 1",
                    table.name
                ),
                format!(
                    "SELECT DISTINCT \"table\" AS r FROM pragma_foreign_key_list('{}')",
                    table.name
                ),
            )
        };
        let mut expected: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        expected.sort();
        let mut found = strings(&db, &columns).await;
        found.sort();
        assert_eq!(found, expected, "columns of {}", table.name);
        for referenced in strings(&db, &references).await {
            let before = schemas[..=position].iter().any(|t| t.name == referenced);
            assert!(
                before,
                "{} points to {referenced}, listed after it",
                table.name
            );
        }
    }
}

/// The S3 server `.ci/run` starts (as for media). Unreachable fails.
fn s3_settings() -> (String, String, String) {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    (
        var("TEST_S3_ENDPOINT", "http://127.0.0.1:9000"),
        var("TEST_S3_ACCESS_KEY", "spanglish-test"),
        var("TEST_S3_SECRET_KEY", "spanglish-test-secret"),
    )
}

async fn a_backup_round_trips_through_s3(backend: Backend) {
    let (endpoint, key_id, secret) = s3_settings();
    let bucket = format!("spanglish-backups-{}", Uuid::new_v4().simple());
    let client =
        spanglish::media::storage::s3_client(Some(&endpoint), "us-east-1", &key_id, &secret);
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("the S3 server at {endpoint} must be running (TEST_S3_ENDPOINT): {e:?}")
        });
    let keys = keys();
    let config = Config {
        s3_endpoint: Some(endpoint.clone()),
        s3_region: Some("us-east-1".into()),
        aws_access_key_id: Some(Secret::new(key_id)),
        aws_secret_access_key: Some(Secret::new(secret)),
        ..config(&keys)
    };
    let (app, _seeded) = seeded_app(backend).await;
    let location = Location::parse(&format!("s3://{bucket}/daily/spanglish.backup")).unwrap();

    backup::backup(&app.state.db, &location, &config)
        .await
        .unwrap();
    let object = client
        .head_object()
        .bucket(&bucket)
        .key("daily/spanglish.backup")
        .send()
        .await
        .unwrap();
    assert!(object.content_length().unwrap_or(0) > 64 * 1024);

    let target = TestDb::create(backend).await;
    let db = connect(&target).await;
    backup::restore(&db, &location, &config).await.unwrap();
    assert_eq!(models(&db).await, models(&app.state.db).await);
}

fn spanglish(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanglish"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATA_DIR", std::env::temp_dir())
        .env("RUST_LOG", "warn")
        .env_remove("BACKUP_RECIPIENT")
        .env_remove("BACKUP_IDENTITY")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Through the real binary: a key pair from `backup-keygen`, a backup, a
/// refused restore with another key (exit code and message), a restore with
/// the identity file.
async fn the_cli_backs_up_and_restores(backend: Backend) {
    let (app, _seeded) = seeded_app(backend).await;
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("spanglish.backup");
    let file = file.to_str().unwrap();

    let (success, identity, recipient) = spanglish(&["backup-keygen"], &[]);
    assert!(success);
    let recipient = recipient
        .trim()
        .strip_prefix("BACKUP_RECIPIENT=")
        .unwrap()
        .to_string();
    let identity_file = dir.path().join("backup.key");
    std::fs::write(&identity_file, &identity).unwrap();

    let (success, _, stderr) =
        spanglish(&["backup", "--to", file], &[("DATABASE_URL", &app.db.url)]);
    assert!(!success);
    assert!(
        stderr.starts_with("spanglish: BACKUP_RECIPIENT is not set"),
        "{stderr}"
    );

    let (success, stdout, stderr) = spanglish(
        &["backup", "--to", file],
        &[
            ("DATABASE_URL", &app.db.url),
            ("BACKUP_RECIPIENT", &recipient),
        ],
    );
    assert!(success, "{stderr}");
    assert!(stdout.contains("backed up"), "{stdout}");

    let target = TestDb::create(backend).await;
    let (success, _, stderr) = spanglish(
        &["restore", "--from", file],
        &[
            ("DATABASE_URL", &target.url),
            ("BACKUP_IDENTITY", &keys().identity),
        ],
    );
    assert!(!success);
    assert_eq!(
        stderr.trim(),
        "spanglish: this backup was not encrypted to BACKUP_IDENTITY's recipient"
    );

    let (success, stdout, stderr) = spanglish(
        &["restore", "--from", file],
        &[
            ("DATABASE_URL", &target.url),
            ("BACKUP_IDENTITY", identity_file.to_str().unwrap()),
        ],
    );
    assert!(success, "{stderr}");
    assert!(stdout.starts_with("restored "), "{stdout}");
    let db = connect(&target).await;
    assert_eq!(models(&db).await, models(&app.state.db).await);
}

/// A key pasted into the wrong place must not end up in the journal: the
/// whole identity file in `BACKUP_IDENTITY` (as `$(cat key)` gives it) is
/// read as the key it holds, and a secret key in `BACKUP_RECIPIENT` is
/// refused without being printed.
#[test]
fn a_secret_key_in_the_wrong_place_is_never_printed() {
    let (file, recipient) = backup::crypto::keygen(chrono::Utc::now());
    let secret = file
        .lines()
        .find(|line| line.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let dir = TempDir::new().unwrap();
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let backup_file = dir.path().join("spanglish.backup");
    let backup_file = backup_file.to_str().unwrap();
    let (success, _, stderr) = spanglish(&["migrate"], &[("DATABASE_URL", &database)]);
    assert!(success, "{stderr}");

    let (success, _, stderr) = spanglish(
        &["backup", "--to", backup_file],
        &[("DATABASE_URL", &database), ("BACKUP_RECIPIENT", secret)],
    );
    assert!(!success);
    assert!(stderr.contains("BACKUP_RECIPIENT"), "{stderr}");
    assert!(!stderr.contains(&secret[20..]), "the key leaked: {stderr}");

    let (success, _, stderr) = spanglish(
        &["backup", "--to", backup_file],
        &[
            ("DATABASE_URL", &database),
            ("BACKUP_RECIPIENT", &recipient),
        ],
    );
    assert!(success, "{stderr}");

    let target = dir.path().join("restored.sqlite");
    let target = format!("sqlite://{}?mode=rwc", target.display());
    let (success, stdout, stderr) = spanglish(
        &["restore", "--from", backup_file],
        &[("DATABASE_URL", &target), ("BACKUP_IDENTITY", &file)],
    );
    assert!(success, "{stderr}");
    assert!(stdout.starts_with("restored "), "{stdout}");

    let damaged = file.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-9");
    let (success, _, stderr) = spanglish(
        &["restore", "--from", backup_file],
        &[("DATABASE_URL", &target), ("BACKUP_IDENTITY", &damaged)],
    );
    assert!(!success);
    assert!(stderr.contains("BACKUP_IDENTITY"), "{stderr}");
    assert!(!stderr.contains(&secret[20..]), "the key leaked: {stderr}");
}

on_both_databases!(
    every_row_survives_a_round_trip_to_both_databases,
    a_wrong_key_is_refused_and_the_target_stays_empty,
    a_damaged_file_is_refused_and_the_target_stays_untouched,
    a_database_with_rows_is_refused_and_left_unchanged,
    a_backup_of_a_newer_schema_is_refused,
    a_row_the_database_refuses_rolls_everything_back,
    a_file_that_is_not_a_backup_is_refused,
    every_table_of_the_migrations_is_backed_up,
    a_backup_round_trips_through_s3,
    the_cli_backs_up_and_restores,
);
