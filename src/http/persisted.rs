//! Automatic persisted queries, Apollo's protocol (version 1): a client sends
//! `extensions.persistedQuery.sha256Hash` instead of its document; on a miss
//! it sends the document with the hash once, and from then on the hash alone
//! works. A short, stable GET URL is what lets a CDN cache a query.
//!
//! The store is per process and bounded: a client that reaches a replica
//! which never saw its document, or lost it to eviction, gets
//! `PERSISTED_QUERY_NOT_FOUND` and sends it again.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::Request;
use lru::LruCache;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How many documents one process remembers. Each is at most
/// `GRAPHQL_MAX_QUERY_BYTES`, so the store stays within a few tens of MiB.
const CAPACITY: NonZeroUsize = NonZeroUsize::MIN.saturating_add(999);

const EXTENSION: &str = "persistedQuery";

#[derive(Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

/// Why a request naming a persisted query cannot run.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The hash is unknown here: the client should send the document too.
    NotFound,
    /// The extension is malformed, of another version, or its hash is not
    /// the document's.
    Invalid(&'static str),
}

#[derive(Clone)]
pub struct PersistedQueries {
    documents: Arc<Mutex<LruCache<String, Arc<str>>>>,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self {
            documents: Arc::new(Mutex::new(LruCache::new(CAPACITY))),
        }
    }
}

impl PersistedQueries {
    /// Fills in the document of a request that names one by hash, or checks
    /// that a request bringing both agrees and remembers the document. A
    /// request without the extension passes untouched.
    ///
    /// Callers admit the request's document (size, characters) before this,
    /// so only admitted documents are ever stored.
    pub fn resolve(&self, request: &mut Request) -> Result<(), Refused> {
        let Some(value) = request.extensions.remove(EXTENSION) else {
            return Ok(());
        };
        let persisted: PersistedQuery = async_graphql::from_value(value)
            .map_err(|_| Refused::Invalid("the persistedQuery extension is malformed"))?;
        if persisted.version != 1 {
            return Err(Refused::Invalid(
                "only version 1 of the persistedQuery extension is supported",
            ));
        }
        let hash = persisted.sha256_hash.to_ascii_lowercase();

        if request.query.is_empty() {
            let document = self.lookup(&hash).ok_or(Refused::NotFound)?;
            request.query = document.to_string();
            return Ok(());
        }

        // Without this check anyone could file a harmful document under the
        // hash of a popular one, and every client (and the CDN) sending that
        // hash would run it.
        if hex::encode(Sha256::digest(request.query.as_bytes())) != hash {
            return Err(Refused::Invalid("provided sha does not match query"));
        }
        self.documents()
            .put(hash, Arc::from(request.query.as_str()));
        Ok(())
    }

    fn lookup(&self, hash: &str) -> Option<Arc<str>> {
        self.documents().get(hash).cloned()
    }

    /// A panic elsewhere while holding the lock leaves a usable map: the
    /// worst it can hold is a document that was verified already.
    fn documents(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<str>>> {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hash(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        request.extensions.insert(
            EXTENSION.into(),
            async_graphql::value!({ "version": 1, "sha256Hash": hash }),
        );
        request
    }

    fn sha(query: &str) -> String {
        hex::encode(Sha256::digest(query.as_bytes()))
    }

    #[test]
    fn a_hash_is_found_only_after_its_document_was_sent_with_it() {
        let store = PersistedQueries::default();
        let query = "{ events { totalCount } }";

        assert_eq!(
            store.resolve(&mut with_hash("", &sha(query))),
            Err(Refused::NotFound)
        );
        assert_eq!(store.resolve(&mut with_hash(query, &sha(query))), Ok(()));

        let mut by_hash = with_hash("", &sha(query).to_uppercase());
        assert_eq!(store.resolve(&mut by_hash), Ok(()));
        assert_eq!(by_hash.query, query);
    }

    #[test]
    fn a_document_filed_under_another_documents_hash_is_refused_and_not_stored() {
        let store = PersistedQueries::default();
        let popular = "{ events { totalCount } }";
        let harmful = "mutation { logout(refreshToken: \"x\") }";

        assert!(matches!(
            store.resolve(&mut with_hash(harmful, &sha(popular))),
            Err(Refused::Invalid(_))
        ));
        assert_eq!(
            store.resolve(&mut with_hash("", &sha(popular))),
            Err(Refused::NotFound)
        );
    }

    #[test]
    fn the_store_forgets_the_least_recently_used_beyond_its_capacity() {
        let store = PersistedQueries::default();
        let queries: Vec<String> = (0..=CAPACITY.get())
            .map(|i| format!("{{ events(first: {i}) {{ totalCount }} }}"))
            .collect();
        for query in &queries {
            store.resolve(&mut with_hash(query, &sha(query))).unwrap();
        }

        assert_eq!(
            store.resolve(&mut with_hash("", &sha(&queries[0]))),
            Err(Refused::NotFound)
        );
        assert_eq!(store.resolve(&mut with_hash("", &sha(&queries[1]))), Ok(()));
    }
}
