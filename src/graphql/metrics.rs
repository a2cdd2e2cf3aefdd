//! Latency and outcome of every executed GraphQL operation, by operation
//! name and type: `graphql_operations_total{operation, type, outcome}` and
//! `graphql_operation_duration_seconds{operation, type}`. The outcome is
//! `ok`, `error` (an answer with GraphQL errors) or `cancelled` (no answer:
//! the client hung up, or the request timeout fired).
//!
//! The operation name is chosen by the client, so it must not be able to
//! mint series at will: only names shaped like `^[A-Za-z_][A-Za-z0-9_]{0,63}$`
//! are kept, and only the first `MAX_OPERATION_NAMES` of them; the rest share
//! the label `other`. An operation without a name is `anonymous`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerResult, Variables};

/// Distinct operation names one schema (so one process) labels by name.
pub const MAX_OPERATION_NAMES: usize = 200;

/// The longest operation name kept as a label.
const MAX_NAME_LEN: usize = 64;

pub const ANONYMOUS: &str = "anonymous";
pub const OTHER: &str = "other";

/// Registered once per schema: the name budget is shared by all requests.
pub struct OperationMetrics {
    names: Arc<NameBudget>,
}

impl OperationMetrics {
    pub fn new() -> Self {
        Self {
            names: Arc::new(NameBudget::new(MAX_OPERATION_NAMES)),
        }
    }
}

impl Default for OperationMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ExtensionFactory for OperationMetrics {
    /// The engine creates one extension per operation (each member of a
    /// batch included), so each is counted once.
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsExtension {
            names: self.names.clone(),
            requested: OnceLock::new(),
            identified: OnceLock::new(),
        })
    }
}

struct OperationMetricsExtension {
    names: Arc<NameBudget>,
    /// The `operationName` the client sent, if any.
    requested: OnceLock<Option<String>>,
    /// Name and type of the operation the document selects, once parsed.
    identified: OnceLock<Identified>,
}

struct Identified {
    name: Option<String>,
    kind: &'static str,
}

#[async_graphql::async_trait::async_trait]
impl Extension for OperationMetricsExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut recording = Recording {
            extension: self,
            started: Instant::now(),
            outcome: None,
        };
        let response = next.run(ctx).await;
        recording.outcome = Some(if response.errors.is_empty() {
            "ok"
        } else {
            "error"
        });
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let _ = self.requested.set(request.operation_name.clone());
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let requested = self.requested.get().and_then(Option::as_deref);
        let _ = self.identified.set(identify(&document, requested));
        Ok(document)
    }
}

impl OperationMetricsExtension {
    fn record(&self, outcome: &'static str, elapsed: Duration) {
        let (name, kind) = match self.identified.get() {
            Some(found) => (found.name.as_deref(), found.kind),
            // The document never parsed, or the request failed before that.
            None => (self.requested.get().and_then(Option::as_deref), "unknown"),
        };
        let operation = self.names.label(name);
        metrics::counter!(
            "graphql_operations_total",
            "operation" => operation.clone(),
            "type" => kind,
            "outcome" => outcome,
        )
        .increment(1);
        metrics::histogram!(
            "graphql_operation_duration_seconds",
            "operation" => operation,
            "type" => kind,
        )
        .record(elapsed.as_secs_f64());
    }
}

/// Records the operation when it ends, however it ends: an operation whose
/// request is dropped midway (the request timeout, a client that hung up)
/// never gets an answer, and counts as cancelled, apart from the errors, so
/// that clients leaving early do not read as the server failing.
struct Recording<'a> {
    extension: &'a OperationMetricsExtension,
    started: Instant,
    outcome: Option<&'static str>,
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or("cancelled");
        self.extension.record(outcome, self.started.elapsed());
    }
}

/// The operation the engine will run, chosen the way it chooses: by the
/// requested name, else the document's only operation. A name the document
/// lacks, or a missing name where one is needed, fails in the engine: the
/// type is then `unknown`.
fn identify(document: &ExecutableDocument, requested: Option<&str>) -> Identified {
    match (&document.operations, requested) {
        (DocumentOperations::Single(operation), None) => Identified {
            name: None,
            kind: kind_of(operation.node.ty),
        },
        (DocumentOperations::Multiple(operations), Some(name)) => Identified {
            name: Some(name.to_string()),
            kind: operations
                .get(name)
                .map_or("unknown", |operation| kind_of(operation.node.ty)),
        },
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            match operations.iter().next() {
                Some((name, operation)) => Identified {
                    name: Some(name.to_string()),
                    kind: kind_of(operation.node.ty),
                },
                None => Identified {
                    name: None,
                    kind: "unknown",
                },
            }
        }
        (_, requested) => Identified {
            name: requested.map(str::to_string),
            kind: "unknown",
        },
    }
}

fn kind_of(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The names admitted as labels: first come, first kept, up to a cap.
struct NameBudget {
    cap: usize,
    known: Mutex<HashSet<String>>,
}

impl NameBudget {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            known: Mutex::new(HashSet::new()),
        }
    }

    fn label(&self, name: Option<&str>) -> String {
        let Some(name) = name else {
            return ANONYMOUS.to_string();
        };
        if !well_formed(name) {
            return OTHER.to_string();
        }

        let Ok(mut known) = self.known.lock() else {
            return OTHER.to_string();
        };
        if known.contains(name) {
            return name.to_string();
        }
        if known.len() >= self.cap {
            return OTHER.to_string();
        }
        known.insert(name.to_string());
        name.to_string()
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,63}$`: a GraphQL name of reasonable length,
/// which also keeps quotes and newlines out of the exposition format.
fn well_formed(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    starts_well
        && name.len() <= MAX_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_graphql_names_of_reasonable_length_are_labels() {
        assert!(well_formed("UpcomingEvents"));
        assert!(well_formed("_private_2"));
        assert!(well_formed(&"a".repeat(64)));
        assert!(!well_formed(&"a".repeat(65)));
        assert!(!well_formed("a\"b"));
        assert!(!well_formed("2fast"));
        assert!(!well_formed(""));
        assert!(!well_formed("naïve"));
    }

    #[test]
    fn names_past_the_cap_share_one_label_and_known_names_keep_theirs() {
        let budget = NameBudget::new(2);
        assert_eq!(budget.label(Some("One")), "One");
        assert_eq!(budget.label(Some("Two")), "Two");
        assert_eq!(budget.label(Some("Three")), OTHER);
        assert_eq!(budget.label(Some("One")), "One");
        assert_eq!(budget.label(None), ANONYMOUS);
    }

    struct Slow;

    #[async_graphql::Object]
    impl Slow {
        async fn never(&self) -> bool {
            std::future::pending().await
        }

        async fn now(&self) -> bool {
            true
        }
    }

    fn count(rendered: &str, name: &str, outcome: &str) -> usize {
        let series = format!(
            "graphql_operations_total{{operation=\"{name}\",type=\"query\",outcome=\"{outcome}\"}}"
        );
        rendered
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |value| value.trim().parse().unwrap())
    }

    #[test]
    fn an_operation_dropped_before_its_answer_counts_as_cancelled() {
        use async_graphql::{EmptyMutation, EmptySubscription, Schema};
        use futures_util::FutureExt as _;

        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let schema = Schema::build(Slow, EmptyMutation, EmptySubscription)
            .extension(OperationMetrics::new())
            .finish();

        metrics::with_local_recorder(&recorder, || {
            let answered = schema.execute("query Now { now }").now_or_never();
            assert!(answered.is_some_and(|response| response.errors.is_empty()));

            let mut waiting = Box::pin(schema.execute("query Never { never }"));
            assert!((&mut waiting).now_or_never().is_none());
            drop(waiting);
        });

        let rendered = handle.render();
        assert_eq!(count(&rendered, "Now", "ok"), 1, "{rendered}");
        assert_eq!(count(&rendered, "Never", "cancelled"), 1, "{rendered}");
        assert_eq!(count(&rendered, "Never", "error"), 0, "{rendered}");
    }
}
