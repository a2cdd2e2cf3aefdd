//! Fetches the GraphiQL playground assets from npm (pinned by `playground/package-lock.json`)
//! and stages them in `OUT_DIR/playground/`, where `src/playground.rs` embeds them.
//!
//! Set `SPANGLISH_PLAYGROUND_ASSETS=<dir>` to copy the four files from `<dir>` instead of
//! running npm (offline or container builds). Set `NPM=<path>` to use a specific npm binary.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (path inside `node_modules`, file name inside `OUT_DIR/playground/`).
const ASSETS: [(&str, &str); 4] = [
    ("graphiql/graphiql.min.js", "graphiql.min.js"),
    ("graphiql/graphiql.min.css", "graphiql.min.css"),
    (
        "react/umd/react.production.min.js",
        "react.production.min.js",
    ),
    (
        "react-dom/umd/react-dom.production.min.js",
        "react-dom.production.min.js",
    ),
];

const INSTALL_HINT: &str = "npm is needed to build spanglish: the GraphQL playground assets \
     come from npm at build time. On Debian/Ubuntu install it with `apt-get install npm` \
     (or point the NPM env var at an npm binary), or set SPANGLISH_PLAYGROUND_ASSETS to a \
     directory holding graphiql.min.js, graphiql.min.css, react.production.min.js and \
     react-dom.production.min.js.";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=playground/package.json");
    println!("cargo:rerun-if-changed=playground/package-lock.json");
    println!("cargo:rerun-if-env-changed=SPANGLISH_PLAYGROUND_ASSETS");
    println!("cargo:rerun-if-env-changed=NPM");

    let out_dir = PathBuf::from(env_or_fail("OUT_DIR"));
    let dest = out_dir.join("playground");
    create_dir(&dest);

    match env::var_os("SPANGLISH_PLAYGROUND_ASSETS").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let src = PathBuf::from(dir);
            for (_, name) in ASSETS {
                let file = src.join(name);
                println!("cargo:rerun-if-changed={}", file.display());
                copy(&file, &dest.join(name));
            }
        }
        None => {
            let node_modules = npm_ci(&out_dir);
            for (rel, name) in ASSETS {
                copy(&node_modules.join(rel), &dest.join(name));
            }
        }
    }
}

/// Installs the locked packages into a copy of `playground/` under `OUT_DIR`, so the build
/// never writes into the source tree, and returns its `node_modules`.
fn npm_ci(out_dir: &Path) -> PathBuf {
    let manifest_dir = PathBuf::from(env_or_fail("CARGO_MANIFEST_DIR"));
    let src = manifest_dir.join("playground");
    let prefix = out_dir.join("playground-npm");
    create_dir(&prefix);
    // npm resolves symlinks in the working directory but not in --prefix; a
    // target folder reached through a symlink would then look like another
    // package to it. Hand it the real path.
    let prefix = fs::canonicalize(&prefix).unwrap_or(prefix);
    for name in ["package.json", "package-lock.json"] {
        copy(&src.join(name), &prefix.join(name));
    }

    let npm = env::var_os("NPM")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| if cfg!(windows) { "npm.cmd" } else { "npm" }.into());
    // Output is captured rather than inherited: cargo parses a build script's stdout for
    // `cargo:` directives, and npm's chatter has no business there.
    let output = Command::new(&npm)
        .arg("ci")
        .arg("--ignore-scripts")
        .arg("--no-audit")
        .arg("--no-fund")
        .arg("--prefix")
        .arg(&prefix)
        .current_dir(&prefix)
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => fail(&format!(
            "`{} ci` failed ({}) in {}; it needs the npm registry or a warm npm cache.\n\
             --- stdout ---\n{}\n--- stderr ---\n{}\n{INSTALL_HINT}",
            Path::new(&npm).display(),
            out.status,
            prefix.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        )),
        Err(err) => fail(&format!(
            "could not run `{}`: {err}.\n{INSTALL_HINT}",
            Path::new(&npm).display()
        )),
    }
    prefix.join("node_modules")
}

fn env_or_fail(name: &str) -> String {
    env::var(name).unwrap_or_else(|err| fail(&format!("{name} is not set: {err}")))
}

fn create_dir(dir: &Path) {
    if let Err(err) = fs::create_dir_all(dir) {
        fail(&format!("cannot create {}: {err}", dir.display()));
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(err) = fs::copy(from, to) {
        fail(&format!(
            "cannot copy {} to {}: {err}",
            from.display(),
            to.display()
        ));
    }
}

fn fail(msg: &str) -> ! {
    panic!("spanglish build script: {msg}");
}
