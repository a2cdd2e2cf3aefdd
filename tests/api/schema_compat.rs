//! The schema may only grow within a major version: every type, field,
//! argument, input field and enum value of the last release must still be
//! there with the same type, and nothing new may be required of clients.
//! The last release's schema is kept in `docs/schema/<version>.graphql`.

use std::collections::BTreeSet;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

/// What clients rely on, one line each, and what a new schema may not demand.
#[derive(Default)]
struct Surface {
    promised: BTreeSet<String>,
    required_inputs: BTreeSet<String>,
}

fn surface(sdl: &str) -> Surface {
    let document = parse_schema(sdl).expect("a schema that parses");
    let mut surface = Surface::default();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let name = ty.node.name.node.to_string();
        match &ty.node.kind {
            TypeKind::Object(object) => {
                surface.promised.insert(format!("type {name}"));
                for field in &object.fields {
                    let field = &field.node;
                    surface
                        .promised
                        .insert(format!("{name}.{}: {}", field.name.node, field.ty.node));
                    for argument in &field.arguments {
                        let argument = &argument.node;
                        let fact = format!(
                            "{name}.{}({}: {})",
                            field.name.node, argument.name.node, argument.ty.node
                        );
                        if !argument.ty.node.nullable && argument.default_value.is_none() {
                            surface.required_inputs.insert(fact.clone());
                        }
                        surface.promised.insert(fact);
                    }
                }
            }
            TypeKind::InputObject(input) => {
                surface.promised.insert(format!("input {name}"));
                for field in &input.fields {
                    let field = &field.node;
                    let fact = format!("{name}.{}: {}", field.name.node, field.ty.node);
                    if !field.ty.node.nullable && field.default_value.is_none() {
                        surface.required_inputs.insert(fact.clone());
                    }
                    surface.promised.insert(fact);
                }
            }
            TypeKind::Enum(values) => {
                for value in &values.values {
                    surface
                        .promised
                        .insert(format!("enum {name}.{}", value.node.value.node));
                }
            }
            TypeKind::Scalar => {
                surface.promised.insert(format!("scalar {name}"));
            }
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                surface.promised.insert(format!("type {name}"));
            }
        }
    }
    surface
}

/// What a client of `old` would find broken in `new`.
fn breaking_changes(old: &str, new: &str) -> Vec<String> {
    let (old, new) = (surface(old), surface(new));
    let removed = old
        .promised
        .difference(&new.promised)
        .map(|f| format!("removed or changed: {f}"));
    let demanded = new
        .required_inputs
        .difference(&old.required_inputs)
        .map(|f| format!("newly required: {f}"));
    removed.chain(demanded).collect()
}

fn major(version: &str) -> u64 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_schema_keeps_every_promise_of_the_last_release_within_a_major_version() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema");
    let mut releases: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".graphql")
                .map(str::to_string)
        })
        .collect();
    releases.sort_by_key(|v| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    let last = releases
        .last()
        .expect("a released schema under docs/schema");

    let released = std::fs::read_to_string(format!("{dir}/{last}.graphql")).unwrap();
    let current = spanglish::graphql::sdl();
    let broken = breaking_changes(&released, &current);
    let current_major = major(env!("CARGO_PKG_VERSION"));
    assert!(
        broken.is_empty() || current_major > major(last),
        "breaking changes against release {last} need a new major version:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_removals_type_changes_and_new_requirements() {
    let old = "type Query { a: Int! b(x: Int): String }\ninput I { f: Int }\nenum E { ONE TWO }";
    assert!(breaking_changes(old, old).is_empty());
    let added = "type Query { a: Int! b(x: Int): String c: Int }\ninput I { f: Int g: Int }\nenum E { ONE TWO THREE }";
    assert!(breaking_changes(old, added).is_empty(), "growing is fine");

    let cases = [
        "type Query { b(x: Int): String }\ninput I { f: Int }\nenum E { ONE TWO }",
        "type Query { a: Int b(x: Int): String }\ninput I { f: Int }\nenum E { ONE TWO }",
        "type Query { a: Int! b(x: Int): String }\ninput I { f: Int }\nenum E { ONE }",
        "type Query { a: Int! b(x: Int, y: Int!): String }\ninput I { f: Int }\nenum E { ONE TWO }",
        "type Query { a: Int! b(x: Int): String }\ninput I { f: Int g: String! }\nenum E { ONE TWO }",
    ];
    for new in cases {
        assert!(!breaking_changes(old, new).is_empty(), "not caught: {new}");
    }
}
