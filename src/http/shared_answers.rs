//! Answers to anonymous queries, kept for a moment and shared by everyone who
//! asks the same thing. When an event goes on sale, hundreds of people load
//! the same public list within seconds; without this each of them would cost
//! a round of SQL and a full GraphQL execution, with it one per
//! `GRAPHQL_ANSWER_CACHE_MS`.
//!
//! Only what an anonymous caller may see is kept, so nothing personal can be
//! handed to someone else. A write through this process drops everything at
//! once; writes through other replicas (or background jobs) show after at
//! most the time-to-live, which is why it is kept short.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_graphql::Request;
use axum::body::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};

/// At most this many answers, each at most `MAX_ANSWER_BYTES`: a few MiB.
const CAPACITY: NonZeroUsize = NonZeroUsize::MIN.saturating_add(127);
const MAX_ANSWER_BYTES: usize = 256 * 1024;

pub type Key = [u8; 32];

struct Entry {
    body: Bytes,
    stored: Instant,
}

pub struct SharedAnswers {
    ttl: Duration,
    answers: Mutex<LruCache<Key, Entry>>,
    /// Moves on every write, so an answer computed before a write finished
    /// is not stored after it.
    generation: AtomicU64,
}

/// What a lookup leaves behind for the store that follows it.
pub struct Ticket {
    key: Key,
    generation: u64,
}

impl SharedAnswers {
    /// A time-to-live of zero turns the cache off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            answers: Mutex::new(LruCache::new(CAPACITY)),
            generation: AtomicU64::new(0),
        }
    }

    /// The answer to this exact request if one is fresh; otherwise a ticket
    /// to store the answer under. `None` when the cache is off.
    pub fn lookup(&self, request: &Request) -> Option<Result<Bytes, Ticket>> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = key(request);
        let generation = self.generation.load(Ordering::Acquire);

        let mut answers = self.answers();
        match answers.get(&key) {
            Some(entry) if entry.stored.elapsed() < self.ttl => Some(Ok(entry.body.clone())),
            Some(_) => {
                answers.pop(&key);
                Some(Err(Ticket { key, generation }))
            }
            None => Some(Err(Ticket { key, generation })),
        }
    }

    pub fn store(&self, ticket: Ticket, body: Bytes) {
        if body.len() > MAX_ANSWER_BYTES {
            return;
        }
        let mut answers = self.answers();
        // Checked under the lock that `forget_all` also takes, so a write
        // cannot slip between the check and the insert.
        if self.generation.load(Ordering::Acquire) != ticket.generation {
            return;
        }
        answers.put(
            ticket.key,
            Entry {
                body,
                stored: Instant::now(),
            },
        );
    }

    /// After a write: every kept answer may be out of date.
    pub fn forget_all(&self) {
        let mut answers = self.answers();
        self.generation.fetch_add(1, Ordering::AcqRel);
        answers.clear();
    }

    /// Nothing is left half-done while the lock is held, so a poisoned map
    /// is still a valid one.
    fn answers(&self) -> MutexGuard<'_, LruCache<Key, Entry>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The document, the operation chosen and the variables: everything that
/// decides an anonymous answer. Each part is length-prefixed, so no two
/// different requests can run together into the same bytes.
fn key(request: &Request) -> Key {
    let variables = serde_json::to_vec(&request.variables).unwrap_or_default();
    let operation = request.operation_name.as_deref().unwrap_or_default();

    let mut hasher = Sha256::new();
    for part in [request.query.as_bytes(), operation.as_bytes(), &variables] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, first: i32) -> Request {
        Request::new(query).variables(async_graphql::Variables::from_json(
            serde_json::json!({ "first": first }),
        ))
    }

    fn miss(cache: &SharedAnswers, request: &Request) -> Ticket {
        match cache.lookup(request) {
            Some(Err(ticket)) => ticket,
            Some(Ok(_)) => panic!("expected a miss"),
            None => panic!("the cache is off"),
        }
    }

    #[test]
    fn an_answer_is_shared_until_it_expires() {
        let cache = SharedAnswers::new(Duration::from_millis(50));
        let list = request("{ events { totalCount } }", 20);

        let ticket = miss(&cache, &list);
        cache.store(ticket, Bytes::from_static(b"answer"));
        assert!(matches!(cache.lookup(&list), Some(Ok(body)) if body == "answer"));

        std::thread::sleep(Duration::from_millis(60));
        miss(&cache, &list);
    }

    #[test]
    fn other_variables_or_operations_are_other_answers() {
        let cache = SharedAnswers::new(Duration::from_secs(60));
        let twenty = request("query A { a } query B { b }", 20);
        let ticket = miss(&cache, &twenty);
        cache.store(ticket, Bytes::from_static(b"twenty"));

        miss(&cache, &request("query A { a } query B { b }", 21));
        let mut named = request("query A { a } query B { b }", 20);
        named.operation_name = Some("B".into());
        miss(&cache, &named);
    }

    #[test]
    fn a_write_drops_answers_and_refuses_those_computed_before_it() {
        let cache = SharedAnswers::new(Duration::from_secs(60));
        let list = request("{ events { totalCount } }", 20);
        let ticket = miss(&cache, &list);
        cache.store(ticket, Bytes::from_static(b"before"));

        let slow = miss(&cache, &request("{ events { totalCount } }", 5));
        cache.forget_all();
        miss(&cache, &list);

        cache.store(slow, Bytes::from_static(b"stale"));
        miss(&cache, &request("{ events { totalCount } }", 5));
    }

    #[test]
    fn a_zero_time_to_live_turns_it_off() {
        let cache = SharedAnswers::new(Duration::ZERO);
        assert!(cache.lookup(&request("{ a }", 1)).is_none());
    }
}
