//! The README and the files in `docs/`, run as a reader would paste them, so
//! that they cannot rot: the block marked `sh readme-test-server` starts the
//! service, then every block marked `sh readme-test` runs in order in one
//! bash, against it: the README's first, then those of `docs/` in the order
//! of `DOCUMENTS`; then, in the same order, the blocks marked
//! `sh readme-test-last`: drills that replace the deployment's keys, which
//! the server under test (never restarted) would not follow. Their links
//! are checked too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestDatabase;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The documents whose marked blocks run, in this order, in one shell: the
/// README, then `docs/` in the order of the README's map. A block may use the
/// variables (`USER_ID`, `SECRET`, `ACCESS`, `REFRESH`, `DEVICE`, `TOKEN`, ...)
/// of any block before it, so a file that uses another's goes after it.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "docs/endpoints.md",
    "docs/dpop.md",
    "docs/mfa.md",
    "docs/verifying-tokens.md",
    "docs/cli.md",
    "docs/configuration.md",
    "docs/brute-force.md",
    "docs/security.md",
    "docs/operations.md",
    "docs/sizing.md",
    "docs/architecture.md",
    "docs/development.md",
    "docs/compose.md",
];

/// Every document, with its text, in the order of `DOCUMENTS`.
fn documents() -> Vec<(&'static str, String)> {
    DOCUMENTS
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(Path::new(ROOT).join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (*name, text)
        })
        .collect()
}

/// The lines of `markdown` outside fenced blocks.
fn prose(markdown: &str) -> Vec<&str> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors GitHub gives the headings of `markdown`: lower-cased, spaces
/// to hyphens, punctuation dropped, repeats numbered.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the inline links `[text](target)` of `markdown`'s prose.
fn links(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(markdown) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    targets
}

/// The bodies of the fenced blocks whose info string is exactly `info`, in order.
pub fn fenced_blocks(markdown: &str, info: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut fence: Option<(bool, String)> = None; // (wanted, body)
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match fence.take() {
            None => {
                if let Some(rest) = trimmed.strip_prefix("```") {
                    fence = Some((rest.trim() == info, String::new()));
                }
            }
            Some((wanted, body)) if trimmed.starts_with("```") => {
                if wanted {
                    blocks.push(body);
                }
            }
            Some((wanted, mut body)) => {
                body.push_str(line);
                body.push('\n');
                fence = Some((wanted, body));
            }
        }
    }
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("tessera-readme-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn the_readme_uses_one_spelling_and_no_placeholders_in_commands() {
    for (name, text) in documents() {
        // `tessera` is installed (one spelling); only the verifier kit's example
        // is run with cargo, as `cargo run -p tessera-verifier --example ...`.
        for stale in ["cargo run --", "cargo run -- ", "/app/tessera", "[-d "] {
            assert!(!text.contains(stale), "{name} still says `{stale}`");
        }
        // Sample output is shown in comment lines; commands hold no elisions.
        let tested = [
            fenced_blocks(&text, "sh readme-test"),
            fenced_blocks(&text, "sh readme-test-last"),
        ];
        for block in tested.iter().flatten() {
            for line in block.lines().filter(|l| !l.trim_start().starts_with('#')) {
                assert!(
                    !line.contains("..."),
                    "a tested command in {name} holds a placeholder: {line}"
                );
            }
        }
    }
}

#[test]
fn every_file_in_docs_is_run_and_on_the_readmes_map() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    let listed: BTreeSet<String> = DOCUMENTS[1..].iter().map(|&d| d.to_owned()).collect();
    assert_eq!(on_disk, listed, "docs/*.md vs DOCUMENTS");
    // The map names them in the order their blocks run.
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let map = readme
        .split("\n## Documentation")
        .nth(1)
        .expect("a Documentation section in the README");
    let map = map.split("\n## ").next().unwrap();
    let mapped: Vec<String> = links(map)
        .into_iter()
        .filter(|target| target.starts_with("docs/"))
        .collect();
    assert_eq!(
        mapped,
        DOCUMENTS[1..],
        "the README's map, in the order of DOCUMENTS"
    );
}

#[test]
fn every_link_between_the_documents_resolves() {
    let root = Path::new(ROOT);
    let mut broken = Vec::new();
    for (name, text) in documents() {
        let dir = root.join(name).parent().unwrap().to_owned();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                root.join(name)
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
                continue;
            }
            if let Some(anchor) = anchor {
                let linked = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&linked).contains(anchor) {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[tokio::test]
async fn the_readme_quickstart_and_examples_run_as_written() {
    let documents = documents();
    let server_blocks: Vec<String> = documents
        .iter()
        .flat_map(|(_, text)| fenced_blocks(text, "sh readme-test-server"))
        .collect();
    assert_eq!(
        server_blocks.len(),
        1,
        "one block marked `sh readme-test-server`, in all the documents"
    );
    let server_command: Vec<&str> = server_blocks[0]
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(
        server_command.len(),
        1,
        "the server block is one command: {server_command:?}"
    );
    // (document, its block number, the block), in the order they run: the
    // drills last, since the server keeps the keys it was started with.
    let marked = |info: &'static str| {
        documents.iter().flat_map(move |(name, text)| {
            fenced_blocks(text, info)
                .into_iter()
                .enumerate()
                .map(move |(i, block)| (*name, format!("{info} {}", i + 1), block))
        })
    };
    let blocks: Vec<(&str, String, String)> = marked("sh readme-test")
        .chain(marked("sh readme-test-last"))
        .collect();
    assert!(
        blocks.len() >= 5,
        "the documents' tested blocks went missing"
    );

    // The binary under test is the `tessera` on the PATH; the working
    // directory is empty, so nothing is read from the repository.
    let scratch = Scratch::new();
    let bin = scratch.0.join("bin");
    let home = scratch.0.join("home");
    let work = scratch.0.join("work");
    for dir in [&bin, &home, &work] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tessera"), bin.join("tessera")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let (port, admin_port) = (free_port(), free_port());
    // Created by `serve --migrate` as on a first run; dropped with this value.
    let database = TestDatabase::adopt(format!("tessera_readme_{}", uuid::Uuid::new_v4().simple()));
    let env: Vec<(&str, String)> = vec![
        ("PATH", path),
        ("HOME", home.display().to_string()),
        ("LANG", "C.UTF-8".into()),
        ("TESSERA__DATABASE__URL", database.url.clone()),
        ("TESSERA__HTTP__PUBLIC_ADDR", format!("127.0.0.1:{port}")),
        (
            "TESSERA__HTTP__ADMIN_ADDR",
            format!("127.0.0.1:{admin_port}"),
        ),
        ("TESSERA__ISSUER", format!("http://localhost:{port}")),
        // The built-in local key, set as a deployment sets it (the
        // key-encryption key drill reads it).
        (
            "TESSERA__KEYS__ENCRYPTION_KEY",
            "dGVzc2VyYS1sb2NhbC1kZXYta2V5LW5vdC1zZWNyZXQ=".into(),
        ),
    ];
    // The README's addresses, moved to this run's ports.
    let localize = |text: &str| {
        text.replace("localhost:8080", &format!("localhost:{port}"))
            .replace("localhost:8081", &format!("localhost:{admin_port}"))
    };
    let bash = |script: String, log: &Path| {
        let log = std::fs::File::create(log).unwrap();
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&work)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    };

    let server_log = scratch.0.join("server.log");
    let mut server = Server(bash(
        format!("exec {}", localize(server_command[0])),
        &server_log,
    ));
    let started = Instant::now();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "`{}` exited with {status}:\n{}",
                server_command[0],
                tail(&server_log, 30)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready:\n{}",
            tail(&server_log, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Strict bash: an unset variable, a failing command or an HTTP error
    // (curl --fail-with-body) stops the run at the line that caused it.
    let mut script = String::from(
        "set -euo pipefail\n\
         trap 'echo \"documented command failed (exit $?): $BASH_COMMAND\" >&2' ERR\n\
         curl() { command curl --fail-with-body --show-error \"$@\"; }\n",
    );
    for (name, i, block) in &blocks {
        script.push_str(&format!("echo '--- {name}: {i}'\n"));
        script.push_str(&localize(block));
    }
    let script_log = scratch.0.join("readme.log");
    let mut run = bash(script, &script_log);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = run.kill();
            panic!(
                "the documented blocks ran over 180s:\n{}",
                tail(&script_log, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = std::fs::read_to_string(&script_log).unwrap();
    assert!(
        status.success(),
        "the documented commands failed ({status}):\n{output}\n--- server log (tail) ---\n{}",
        tail(&server_log, 20)
    );
    for expected in [
        "alice is ",
        r#""token_type":"Bearer""#,
        r#""active":true"#,
        "HTTP/1.1 200",
        r#""revoked_sessions""#,
        r#""sessions":["#,
        r#""sessions_revoked""#,
        r#""entries":["#,
        "active",
        r#"{"aud":"https://tickets.example.com/","scope":"read write","roles":["support"],"tenant":"acme"}"#,
        "re-sealed 0 rows under key-encryption key",
        "refused everywhere from now on",
        "signing key found in a leaked backup",
    ] {
        assert!(
            output.contains(expected),
            "`{expected}` not in the output:\n{output}"
        );
    }
    drop(server);
}
