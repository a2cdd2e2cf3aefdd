//! A cap on root fields per operation. Aliases let one request carry many
//! copies of one expensive field (fifty logins, say); depth and complexity
//! limits do not see that, so the root is counted here, through fragments.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

pub struct RootFieldLimit {
    max: usize,
}

impl RootFieldLimit {
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl ExtensionFactory for RootFieldLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RootFieldLimitExtension { max: self.max })
    }
}

struct RootFieldLimitExtension {
    max: usize,
}

#[async_graphql::async_trait::async_trait]
impl Extension for RootFieldLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        for (_, operation) in document.operations.iter() {
            let count = count_fields(
                &document,
                &operation.node.selection_set.node,
                &mut HashSet::new(),
            );
            if count > self.max {
                return Err(ServerError::new(
                    format!(
                        "an operation may select at most {} root fields; this one selects {count}",
                        self.max
                    ),
                    None,
                ));
            }
        }
        Ok(document)
    }
}

fn count_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    seen: &mut HashSet<&'a str>,
) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(fragment) => {
                count_fields(document, &fragment.node.selection_set.node, seen)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                // A cycle is refused by validation later; do not loop on it here.
                if !seen.insert(name) {
                    return 0;
                }
                let count = document
                    .fragments
                    .get(name)
                    .map(|f| count_fields(document, &f.node.selection_set.node, seen))
                    .unwrap_or(0);
                seen.remove(name);
                count
            }
        })
        .sum()
}
