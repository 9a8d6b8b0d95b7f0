//! Where the tests find Postgres: `TESSERA_TEST_DATABASE_URL`, else the
//! server on 127.0.0.1:5432, else a throwaway cluster started from the
//! installed Postgres binaries (initdb into a temp dir) that dies with the
//! test process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// URL of a maintenance database on a server the tests may create databases on.
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TESSERA_TEST_DATABASE_URL") {
            eprintln!("tests: using Postgres from TESSERA_TEST_DATABASE_URL");
            return url;
        }
        let default: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        if TcpStream::connect_timeout(&default, Duration::from_secs(1)).is_ok() {
            eprintln!("tests: using the running Postgres at 127.0.0.1:5432");
            return DEFAULT_URL.to_owned();
        }
        start_throwaway_cluster()
    })
}

fn start_throwaway_cluster() -> String {
    let bin = find_postgres_bin().expect(
        "no Postgres reachable at 127.0.0.1:5432 and no Postgres server binaries installed \
         (install postgresql or set TESSERA_TEST_DATABASE_URL)",
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("tessera-test-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // initdb refuses to run as root; run the cluster as the postgres user then.
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let wrap = |cmd: String| {
        if as_root {
            let _ = Command::new("chown")
                .args(["-R", "postgres", dir.to_str().unwrap()])
                .status();
            format!("runuser -u postgres -- {cmd}")
        } else {
            cmd
        }
    };
    let data = dir.join("data");
    let initdb = wrap(format!(
        "{}/initdb -D {} -U postgres --auth=trust -E UTF8",
        bin.display(),
        data.display()
    ));
    let status = Command::new("sh")
        .arg("-c")
        .arg(&initdb)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "initdb failed: {initdb}");
    let postgres = wrap(format!(
        "{}/postgres -D {} -p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
        bin.display(),
        data.display(),
        dir.display()
    ));
    // The watchdog shell stops the cluster once this test process is gone.
    let script = format!(
        "{postgres} & pg=$!; while kill -0 {} 2>/dev/null; do sleep 1; done; kill $pg; sleep 2; rm -rf {}",
        std::process::id(),
        dir.display()
    );
    // Deliberately not waited on: it lives as long as this process.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "throwaway Postgres did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    eprintln!(
        "tests: started a throwaway Postgres cluster in {} on port {port}",
        dir.display()
    );
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn find_postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}
