//! The GraphQL playground in a real browser: Debian's headless Chromium,
//! driven by tests/browser/playground.mjs, signs a member in through GraphiQL
//! and reads them back, with every request kept on the server's origin.
//!
//! Needs `apt-get install chromium` and `npm ci --prefix tests/browser`; a
//! missing one fails the test with that instruction rather than skipping it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::support::{Backend, TestApp, on_both_databases};

/// Chromium starts, GraphiQL loads and two operations run: seconds on an idle
/// machine, but the suite runs many tests at once on two cores. The script
/// gives up by itself after 150 s; this is the backstop for a hung node.
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);

const PASSWORD: &str = "correct horse battery";

async fn a_member_signs_in_and_sees_themself_in_the_playground(backend: Backend) {
    let script = browser_script();
    let app = TestApp::spawn_with(backend, |config| config.graphql_playground = Some(true)).await;
    let email = format!("browser-{}@example.org", Uuid::new_v4().simple());
    app.register("Brenda Browser", &email).await;

    let args = [app.base.clone(), email.clone(), PASSWORD.to_owned()];
    let output = tokio::task::spawn_blocking(move || run_node(&script, &args))
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the playground walk failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("the result pane shows {email} (MEMBER)")),
        "the script passed without reporting the member:\n{stdout}"
    );
}

on_both_databases!(a_member_signs_in_and_sees_themself_in_the_playground);

/// The script's path, once its browser and packages are known to be there.
fn browser_script() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");

    let chromium = std::env::var("TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the browser test needs Chromium at {chromium}: run `apt-get install chromium` \
         (or point TEST_CHROMIUM at a Chromium binary)"
    );
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "the browser test needs its npm packages: run `npm ci --prefix tests/browser`"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|out| out.status.success()),
        "the browser test needs Node.js 20 or later on the PATH (`node`)"
    );

    dir.join("playground.mjs")
}

/// Runs `node <script> <args>`, killing it if it outlives [`SCRIPT_LIMIT`].
fn run_node(script: &Path, args: &[String]) -> Output {
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Drained on threads of their own so that a chatty child cannot fill a
    // pipe and stall while this thread waits for it to exit.
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser script ran over {SCRIPT_LIMIT:?}; it printed:\n{}\n{}",
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
