//! The booking rush: many members booking one event at once, against a real
//! server process on PostgreSQL. Run through `bench/booking-rush.sh`; it
//! prints bookings per second, latency percentiles and the final count.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, Database, EntityTrait, PaginatorTrait,
    QueryFilter, Set,
};
use serde_json::{Value, json};
use spanglish::accounts::Role;
use spanglish::accounts::entity::user;
use spanglish::accounts::tokens::TokenKeys;
use spanglish::config::Secret;
use spanglish::events::entity::{self as event, EventStatus};
use spanglish::tickets::entity as ticket;
use tokio::sync::Mutex;
use uuid::Uuid;

const SECRET: &str = "benchmark-secret-benchmark-secret-32b";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let admin_url = setting(
        "BENCH_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let binary = setting("SPANGLISH_BIN", "target/release/spanglish");
    let members: usize = setting("BENCH_MEMBERS", "1000").parse().unwrap();
    let capacity: i32 = setting("BENCH_CAPACITY", "200").parse().unwrap();
    let connections: usize = setting("BENCH_CONNECTIONS", "64").parse().unwrap();

    let name = format!("spanglish_bench_{}", Uuid::new_v4().simple());
    let admin = Database::connect(&admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let server_url = admin_url.rsplit_once('/').unwrap().0.to_string();
    let url = format!("{server_url}/{name}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new(&binary)
            .env("DATABASE_URL", &url)
            .env("JWT_SECRET", SECRET)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("DATA_DIR", std::env::temp_dir())
            .stdout(Stdio::null())
            .spawn()
            .expect("build the server first: cargo build --release"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    wait_ready(&client, &base).await;

    let db = Database::connect(&url).await.unwrap();
    let event_id = seed_event(&db, capacity).await;
    let tokens = seed_members(&db, members).await;

    let queue = Arc::new(Mutex::new(tokens));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(worker(
                client.clone(),
                base.clone(),
                event_id,
                queue.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut booked, mut sold_out, mut errors) = (0, 0, 0);
    for worker in workers {
        for (latency, outcome) in worker.await.unwrap() {
            latencies.push(latency);
            match outcome.as_str() {
                "" => booked += 1,
                "SOLD_OUT" => sold_out += 1,
                _ => errors += 1,
            }
        }
    }
    let elapsed = started.elapsed();

    let held = ticket::Entity::find()
        .filter(ticket::Column::EventId.eq(event_id))
        .count(&db)
        .await
        .unwrap();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "requests: {} over {connections} connections in {:.2}s",
        latencies.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "requests per second: {:.0}",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!("booked: {booked}, sold out: {sold_out}, other errors: {errors}");
    println!(
        "latency p50: {:.1} ms, p99: {:.1} ms",
        ms(percentile(0.50)),
        ms(percentile(0.99))
    );
    println!("tickets in the database: {held} (capacity {capacity})");

    drop(server);
    db.close().await.ok();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .ok();
    assert_eq!(
        held as i32,
        capacity.min(members as i32),
        "oversold or undersold"
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not become ready");
}

async fn seed_event(db: &sea_orm::DatabaseConnection, capacity: i32) -> Uuid {
    let now = Utc::now();
    let id = Uuid::now_v7();
    event::ActiveModel {
        id: Set(id),
        slug: Set(format!("rush-{}", id.simple())),
        title: Set("Booking rush".into()),
        description: Set(String::new()),
        starts_at: Set(now + chrono::Duration::days(7)),
        ends_at: Set(now + chrono::Duration::days(7) + chrono::Duration::hours(3)),
        timezone: Set("America/Asuncion".into()),
        location: Set("Benchmark hall".into()),
        search_text: Set("booking rush".into()),
        price_minor: Set(None),
        currency: Set(None),
        capacity: Set(capacity),
        status: Set(EventStatus::Published),
        banner_id: Set(None),
        cancel_reason: Set(None),
        created_by: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .unwrap();
    id
}

async fn seed_members(db: &sea_orm::DatabaseConnection, count: usize) -> Vec<String> {
    let keys = TokenKeys::new(&Secret::new(SECRET)).unwrap();
    let now = Utc::now();
    let mut rows = Vec::with_capacity(count);
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let id = Uuid::now_v7();
        rows.push(user::ActiveModel {
            id: Set(id),
            name: Set(format!("Member {i}")),
            email: Set(format!("member{i}@bench.example")),
            email_key: Set(format!("member{i}@bench.example")),
            search_text: Set(format!("member {i}")),
            password_hash: Set("$argon2id$unused".into()),
            phone: Set(None),
            locale: Set("es".into()),
            role: Set(Role::Member),
            created_at: Set(now),
            updated_at: Set(now),
        });
        tokens.push(keys.issue(id, now).unwrap());
    }
    for chunk in rows.chunks(500) {
        user::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await
            .unwrap();
    }
    tokens
}

async fn worker(
    client: reqwest::Client,
    base: String,
    event: Uuid,
    queue: Arc<Mutex<Vec<String>>>,
) -> Vec<(Duration, String)> {
    let mut results = Vec::new();
    let query = "mutation($e: ID!) { bookTicket(eventId: $e) { id } }";
    loop {
        let Some(token) = queue.lock().await.pop() else {
            break;
        };
        let started = Instant::now();
        let answer: Value = client
            .post(format!("{base}/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": { "e": event } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = answer["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !code.is_empty() && code != "SOLD_OUT" {
            eprintln!("unexpected answer: {answer}");
        }
        results.push((started.elapsed(), code));
    }
    results
}
