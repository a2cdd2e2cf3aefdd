//! Answers to anonymous queries, kept for a moment and shared by everyone who
//! asks the same thing. When an event goes on sale, hundreds of people load
//! the same public list within seconds; without this each of them would cost
//! a round of SQL and a full GraphQL execution, with it one per
//! `GRAPHQL_ANSWER_CACHE_MS`.
//!
//! When a kept answer runs out, everyone asking for it at that moment would
//! miss together and each run the query again; instead the first one runs
//! it and the others wait for its answer, as a CDN collapses requests. (If
//! that run gives nothing to share, an error say, those waiting run the
//! query themselves, side by side rather than one after the other.)
//!
//! Only what an anonymous caller may see is kept, so nothing personal can be
//! handed to someone else. A write through this process drops everything at
//! once; writes through other replicas (or background jobs) show after at
//! most the time-to-live (counted from when the query started), which is
//! why it is kept short.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_graphql::Request;
use axum::body::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Room for every event page of a busy community at once (a crawler, or a
/// share on social media, walks many of them in a row, and an answer pushed
/// out before it is asked again is no help). The bytes held are bounded too,
/// so a few large lists cannot grow it past a few tens of MiB.
const MAX_ANSWERS: NonZeroUsize = NonZeroUsize::MIN.saturating_add(4095);
const MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// What an entry costs beyond its body: the key, the time and the map's own
/// bookkeeping, roughly.
const ENTRY_OVERHEAD_BYTES: usize = 128;

pub type Key = [u8; 32];

struct Entry {
    body: Bytes,
    stored: Instant,
}

pub struct SharedAnswers {
    ttl: Duration,
    answers: Mutex<Answers>,
    /// Moves on every write, so an answer computed before a write finished
    /// is not stored after it.
    generation: AtomicU64,
    /// Names each run of a query that others may wait for.
    runs: AtomicU64,
}

/// The kept answers and the bytes they hold, and the queries being run
/// right now, changed together under one lock.
struct Answers {
    entries: LruCache<Key, Entry>,
    bytes: usize,
    running: HashMap<Key, Running>,
}

/// A query someone is running: those asking the same meanwhile wait on
/// `answer`.
struct Running {
    run: u64,
    answer: watch::Receiver<Option<Bytes>>,
}

impl Answers {
    fn cost(entry: &Entry) -> usize {
        entry.body.len() + ENTRY_OVERHEAD_BYTES
    }

    fn get(&mut self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.pop(key) {
            self.bytes -= Self::cost(&entry);
        }
    }

    /// Inserts, then pushes out the least recently asked answers until both
    /// the count and the byte budget are kept.
    fn insert(&mut self, key: Key, entry: Entry) {
        self.remove(&key);
        self.bytes += Self::cost(&entry);
        self.entries.put(key, entry);

        while self.bytes > MAX_TOTAL_BYTES || self.entries.len() > MAX_ANSWERS.get() {
            match self.entries.pop_lru() {
                Some((_, oldest)) => self.bytes -= Self::cost(&oldest),
                None => break,
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.running.clear();
    }
}

/// What a lookup found.
pub enum Lookup {
    /// A fresh answer.
    Kept(Bytes),
    /// Nothing yet: run the query and hand its answer to `store`.
    Run(Ticket),
    /// Someone else is running the same query.
    Wait(Pending),
}

/// The right, and the duty, to run a query that others may be waiting
/// for. Dropped without `store` (an answer with errors, a client gone), it
/// lets the waiters go and run it themselves.
pub struct Ticket {
    owner: Arc<SharedAnswers>,
    key: Key,
    generation: u64,
    run: u64,
    /// The answer is as old as the moment the query began.
    started: Instant,
    answer: watch::Sender<Option<Bytes>>,
}

impl Ticket {
    /// Hands the answer to those waiting for it, and keeps it unless it is
    /// too large or a write happened while it was computed. (Those waiting
    /// asked before that write finished, so the answer is theirs to have.)
    pub fn store(self, body: Bytes) {
        self.answer.send_replace(Some(body.clone()));
        if body.len() <= MAX_ANSWER_BYTES {
            self.owner
                .keep(self.key, self.generation, self.started, body);
        }
        // The ticket goes last, once the lock `keep` took is released.
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut answers = self.owner.answers();
        if answers
            .running
            .get(&self.key)
            .is_some_and(|running| running.run == self.run)
        {
            answers.running.remove(&self.key);
        }
    }
}

/// Waiting for someone else's run of the same query.
pub struct Pending(watch::Receiver<Option<Bytes>>);

impl Pending {
    /// The answer of the run waited for; `None` when it gave none that may
    /// be shared, and the caller should run the query itself.
    pub async fn answer(mut self) -> Option<Bytes> {
        let answer = self.0.wait_for(Option::is_some).await.ok()?;
        answer.clone()
    }
}

impl SharedAnswers {
    /// A time-to-live of zero turns the cache off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            answers: Mutex::new(Answers {
                entries: LruCache::unbounded(),
                bytes: 0,
                running: HashMap::new(),
            }),
            generation: AtomicU64::new(0),
            runs: AtomicU64::new(0),
        }
    }

    /// The answer to this exact request if one is fresh, a wait for it if
    /// someone is running the same, otherwise a ticket to run it. `None`
    /// when the cache is off.
    pub fn lookup(self: &Arc<Self>, request: &Request) -> Option<Lookup> {
        if self.ttl.is_zero() {
            return None;
        }
        let key = key(request);
        let generation = self.generation.load(Ordering::Acquire);

        let mut answers = self.answers();
        match answers.get(&key) {
            Some(entry) if entry.stored.elapsed() < self.ttl => {
                return Some(Lookup::Kept(entry.body.clone()));
            }
            Some(_) => answers.remove(&key),
            None => {}
        }
        if let Some(running) = answers.running.get(&key) {
            return Some(Lookup::Wait(Pending(running.answer.clone())));
        }

        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let (answer, waiting) = watch::channel(None);
        answers.running.insert(
            key,
            Running {
                run,
                answer: waiting,
            },
        );
        Some(Lookup::Run(Ticket {
            owner: Arc::clone(self),
            key,
            generation,
            run,
            started: Instant::now(),
            answer,
        }))
    }

    fn keep(&self, key: Key, generation: u64, started: Instant, body: Bytes) {
        let mut answers = self.answers();
        // Checked under the lock that `forget_all` also takes, so a write
        // cannot slip between the check and the insert.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        answers.insert(
            key,
            Entry {
                body,
                stored: started,
            },
        );
    }

    /// After a write: every kept answer may be out of date, and so may every
    /// run already started, which no one asking from now on waits for.
    pub fn forget_all(&self) {
        let mut answers = self.answers();
        self.generation.fetch_add(1, Ordering::AcqRel);
        answers.clear();
    }

    /// Nothing is left half-done while the lock is held, so a poisoned map
    /// is still a valid one.
    fn answers(&self) -> MutexGuard<'_, Answers> {
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

    fn miss(cache: &Arc<SharedAnswers>, request: &Request) -> Ticket {
        match cache.lookup(request) {
            Some(Lookup::Run(ticket)) => ticket,
            Some(Lookup::Kept(_)) => panic!("expected a miss"),
            Some(Lookup::Wait(_)) => panic!("expected no one else to be running it"),
            None => panic!("the cache is off"),
        }
    }

    #[test]
    fn an_answer_is_shared_until_it_expires() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_millis(300)));
        let list = request("{ events { totalCount } }", 20);

        let ticket = miss(&cache, &list);
        ticket.store(Bytes::from_static(b"answer"));
        assert!(matches!(cache.lookup(&list), Some(Lookup::Kept(body)) if body == "answer"));

        std::thread::sleep(Duration::from_millis(350));
        miss(&cache, &list);
    }

    #[test]
    fn other_variables_or_operations_are_other_answers() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let twenty = request("query A { a } query B { b }", 20);
        let ticket = miss(&cache, &twenty);
        ticket.store(Bytes::from_static(b"twenty"));

        miss(&cache, &request("query A { a } query B { b }", 21));
        let mut named = request("query A { a } query B { b }", 20);
        named.operation_name = Some("B".into());
        miss(&cache, &named);
    }

    #[test]
    fn a_write_drops_answers_and_refuses_those_computed_before_it() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let list = request("{ events { totalCount } }", 20);
        let ticket = miss(&cache, &list);
        ticket.store(Bytes::from_static(b"before"));

        let slow = miss(&cache, &request("{ events { totalCount } }", 5));
        cache.forget_all();
        miss(&cache, &list);

        slow.store(Bytes::from_static(b"stale"));
        miss(&cache, &request("{ events { totalCount } }", 5));
    }

    fn keep(cache: &Arc<SharedAnswers>, request: &Request, body: Bytes) {
        let ticket = miss(cache, request);
        ticket.store(body);
    }

    fn kept(cache: &Arc<SharedAnswers>, request: &Request) -> bool {
        matches!(cache.lookup(request), Some(Lookup::Kept(_)))
    }

    #[test]
    fn every_page_of_a_busy_community_stays_shared() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let page = |slug: i32| request("query Event($first: Int) { event }", slug);

        for slug in 0..1000 {
            keep(&cache, &page(slug), Bytes::from(vec![b'x'; 4096]));
        }

        assert!((0..1000).all(|slug| kept(&cache, &page(slug))));
    }

    #[test]
    fn large_answers_are_bounded_by_bytes_and_the_least_recent_goes_first() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let list = |n: i32| request("{ events { totalCount } }", n);
        let large = || Bytes::from(vec![b'x'; MAX_ANSWER_BYTES]);
        let fit = MAX_TOTAL_BYTES / (MAX_ANSWER_BYTES + ENTRY_OVERHEAD_BYTES);

        for n in 0..fit as i32 {
            keep(&cache, &list(n), large());
        }
        assert!(
            kept(&cache, &list(0)),
            "asking again makes it the most recent"
        );
        keep(&cache, &list(-1), large());

        assert!(kept(&cache, &list(0)));
        assert!(!kept(&cache, &list(1)), "the least recently asked went out");
        assert!(kept(&cache, &list(-1)));
        assert!(cache.answers().bytes <= MAX_TOTAL_BYTES);
    }

    #[test]
    fn an_answer_over_the_size_limit_is_not_kept() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let list = request("{ events { totalCount } }", 20);

        keep(&cache, &list, Bytes::from(vec![b'x'; MAX_ANSWER_BYTES + 1]));

        assert!(!kept(&cache, &list));
    }

    /// A waiter's outcome; one still waiting after a second is a failure,
    /// not a hung test.
    async fn settled(waiter: tokio::task::JoinHandle<Option<Bytes>>) -> Option<Bytes> {
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the waiter was never answered")
            .unwrap()
    }

    fn wait(cache: &Arc<SharedAnswers>, request: &Request) -> Pending {
        match cache.lookup(request) {
            Some(Lookup::Wait(pending)) => pending,
            _ => panic!("expected to wait for the run under way"),
        }
    }

    #[tokio::test]
    async fn those_asking_meanwhile_wait_for_the_one_run() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let list = request("{ events { totalCount } }", 20);
        let first = miss(&cache, &list);

        let others: Vec<_> = (0..3)
            .map(|_| tokio::spawn(wait(&cache, &list).answer()))
            .collect();
        first.store(Bytes::from_static(b"answer"));

        for other in others {
            assert_eq!(settled(other).await.as_deref(), Some(&b"answer"[..]));
        }
        assert!(kept(&cache, &list));
    }

    #[tokio::test]
    async fn when_the_run_gives_nothing_to_share_the_waiters_run_it_themselves() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let list = request("{ events { totalCount } }", 20);
        let first = miss(&cache, &list);
        let other = tokio::spawn(wait(&cache, &list).answer());

        drop(first);

        assert_eq!(settled(other).await, None);
        miss(&cache, &list);
    }

    #[tokio::test]
    async fn after_a_write_no_one_waits_for_a_run_started_before_it() {
        let cache = Arc::new(SharedAnswers::new(Duration::from_secs(60)));
        let list = request("{ events { totalCount } }", 20);
        let before = miss(&cache, &list);
        let waiting = tokio::spawn(wait(&cache, &list).answer());

        cache.forget_all();
        let after = miss(&cache, &list);
        before.store(Bytes::from_static(b"before"));

        assert_eq!(
            settled(waiting).await.as_deref(),
            Some(&b"before"[..]),
            "it asked before the write"
        );
        assert!(!kept_while_running(&cache, &list));
        after.store(Bytes::from_static(b"after"));
        assert!(kept(&cache, &list));
    }

    /// Whether a fresh answer is kept, without starting a run of its own.
    fn kept_while_running(cache: &Arc<SharedAnswers>, request: &Request) -> bool {
        match cache.lookup(request) {
            Some(Lookup::Kept(_)) => true,
            Some(Lookup::Wait(_)) => false,
            _ => panic!("the run after the write should be under way"),
        }
    }

    #[test]
    fn a_zero_time_to_live_turns_it_off() {
        let cache = Arc::new(SharedAnswers::new(Duration::ZERO));
        assert!(cache.lookup(&request("{ a }", 1)).is_none());
    }
}
