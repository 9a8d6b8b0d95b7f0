//! `spawn_app()` starts the real service on a random port against a fresh
//! database (dropped when the last `TestApp` using it goes away).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use tessera::clock::Clock;
use tessera::config::{LogFormat, Settings, Sources};
use tessera::domain::{ClientId, ClientSecret, GrantType, PlainPassword, Scope, Username};
use tessera::hashing::PasswordHasher;
use tessera::startup::{Application, Options};
use tessera::state::AppState;
use tessera::store::{self, clients, users};
use uuid::Uuid;

use crate::postgres;

pub const PASSWORD: &str = "correct horse battery staple";

/// Everything every test app logs, for tests that inspect logs.
pub static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    tessera::telemetry::init(
        LogFormat::Json,
        "debug,h2=info,hyper=info,reqwest=info",
        move || CaptureWriter(sink.clone()),
    )
    .expect("install test subscriber");
    buffer
});

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// A database created for one test and dropped afterwards.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let server = postgres::server_url();
        let name = format!("tessera_test_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(server)
            .await
            .expect("connect to Postgres");
        conn.execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .expect("create test database");
        let base = server.rsplit_once('/').map(|(b, _)| b).unwrap();
        let url = format!("{base}/{name}");
        let pool = PgPool::connect(&url).await.unwrap();
        store::migrate(&pool).await.unwrap();
        pool.close().await;
        TestDatabase { name, url }
    }
}

impl TestDatabase {
    /// Takes charge of a database the test lets the service create
    /// (`serve --migrate`): it is dropped with this value.
    pub fn adopt(name: String) -> TestDatabase {
        let base = postgres::server_url()
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap();
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(postgres::server_url()).await {
                    let _ = conn
                        .execute(AssertSqlSafe(format!(
                            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub admin_address: String,
    pub pool: PgPool,
    pub state: AppState,
    pub db: Arc<TestDatabase>,
    pub http: reqwest::Client,
    introspector: tokio::sync::OnceCell<(String, String)>,
}

pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::load(Sources::default()).expect("load the built-in settings");
    settings.database.url = Some(SecretString::from(database_url.to_owned()));
    settings.database.max_connections = 10;
    settings.http.public_addr = "127.0.0.1:0".into();
    settings.http.admin_addr = "127.0.0.1:0".into();
    settings.issuer = "http://tessera.test".into();
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let db = Arc::new(TestDatabase::create().await);
    spawn_on(db, configure).await
}

/// Starts an instance on an existing test database (a second instance).
pub async fn spawn_on(db: Arc<TestDatabase>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let app = start_on(db, configure).await;
    app.wait_until_ready().await;
    app
}

/// As `spawn_on`, without waiting for `/readyz`: for tests of what an
/// instance does while it is still starting.
pub async fn start_on(db: Arc<TestDatabase>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&LOGS);
    let mut settings = test_settings(&db.url);
    configure(&mut settings);
    let app = Application::build_with_clock(settings, Options::default(), Clock::default())
        .await
        .expect("build app");
    let port = app.port();
    let admin_port = app.admin_port();
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        admin_address: format!("http://127.0.0.1:{admin_port}"),
        pool: PgPool::connect(&db.url).await.unwrap(),
        state,
        db,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        introspector: tokio::sync::OnceCell::new(),
    }
}

impl TestApp {
    pub async fn spawn_second_instance(&self) -> TestApp {
        spawn_on(self.db.clone(), |_| {}).await
    }

    pub async fn wait_until_ready(&self) {
        for _ in 0..200 {
            let ready = self
                .http
                .get(format!("{}/readyz", self.address))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("app never became ready");
    }

    pub fn advance_clock(&self, by: Duration) {
        self.state.clock.advance(by);
    }

    pub async fn create_user(&self, username: &str, password: &str, scopes: &[&str]) -> Uuid {
        let hasher = PasswordHasher::new(&self.state.settings.password, 1).unwrap();
        let hash = hasher
            .hash(PlainPassword::new_password(SecretString::from(password), 1024).unwrap())
            .await
            .unwrap();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let username = Username::parse(username).unwrap();
        users::insert(
            &self.pool,
            &username,
            &hash,
            &scopes,
            self.state.clock.now(),
        )
        .await
        .unwrap()
    }

    pub async fn create_public_client(&self, client_id: &str, grants: &[&str], scopes: &[&str]) {
        self.insert_client(client_id, None, grants, scopes).await;
    }

    /// Returns the generated secret.
    pub async fn create_confidential_client(
        &self,
        client_id: &str,
        grants: &[&str],
        scopes: &[&str],
    ) -> String {
        let secret = ClientSecret::generate();
        self.insert_client(client_id, Some(&secret), grants, scopes)
            .await;
        secret.expose().to_owned()
    }

    async fn insert_client(
        &self,
        client_id: &str,
        secret: Option<&ClientSecret>,
        grants: &[&str],
        scopes: &[&str],
    ) {
        let grants: Vec<GrantType> = grants
            .iter()
            .map(|g| GrantType::parse(g).unwrap())
            .collect();
        let scopes = Scope::from_tokens(scopes).unwrap();
        clients::insert(
            &mut self.pool.acquire().await.unwrap(),
            &ClientId::parse(client_id).unwrap(),
            secret.map(|s| s.hash()).as_ref().map(|h| h.as_bytes()),
            &grants,
            &scopes,
            false,
            self.state.clock.now(),
        )
        .await
        .unwrap();
    }

    /// alice (scopes read write) and the public client `mobile` (read write profile).
    pub async fn seed(&self) -> Uuid {
        let id = self
            .create_user("alice", PASSWORD, &["read", "write"])
            .await;
        self.create_public_client(
            "mobile",
            &["password", "refresh_token"],
            &["read", "write", "profile"],
        )
        .await;
        id
    }

    pub async fn post_token(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/auth/token", self.address))
            .form(params)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_token_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/auth/token", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn password_grant(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.post_token(&[
            ("grant_type", "password"),
            ("client_id", client_id),
            ("username", username),
            ("password", password),
        ])
        .await
    }

    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> reqwest::Response {
        self.post_token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Logs alice in through `mobile` and returns the token response.
    pub async fn login(&self) -> Value {
        let response = self.password_grant("mobile", "alice", PASSWORD).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    pub async fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap()
    }

    /// Live (unused, unrevoked, in a live session) refresh tokens of alice's logins.
    pub async fn live_refresh_tokens(&self) -> Vec<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT t.token_hash FROM refresh_tokens t JOIN sessions f ON f.id = t.session_id
             WHERE t.used_at IS NULL AND t.revoked_at IS NULL AND f.revoked_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// A client_credentials token for a confidential client.
    pub async fn client_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.http
            .post(format!("{}/auth/token", self.address))
            .basic_auth(client_id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Registers a confidential client with these scopes and returns a
    /// client_credentials access token for it.
    pub async fn service_token(&self, client_id: &str, scopes: &[&str]) -> String {
        let secret = self
            .create_confidential_client(client_id, &["client_credentials"], scopes)
            .await;
        let response = self.client_token(client_id, &secret, None).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// An operator token (scope `admin`).
    pub async fn admin_token(&self) -> String {
        self.service_token(&format!("ops-{}", Uuid::new_v4().simple()), &["admin"])
            .await
    }

    pub fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.admin_address))
            .bearer_auth(token)
    }

    /// Introspects through a confidential client holding `introspect`
    /// (created on first use).
    pub async fn introspect(&self, token: &str) -> Value {
        let response = self.introspect_raw(token).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.json().await.unwrap()
    }

    /// The introspection response as it comes, whatever its status.
    pub async fn introspect_raw(&self, token: &str) -> reqwest::Response {
        let (client_id, secret) = self
            .introspector
            .get_or_init(|| async {
                let id = format!("rs-{}", Uuid::new_v4().simple());
                let secret = self
                    .create_confidential_client(&id, &[], &["introspect"])
                    .await;
                (id, secret)
            })
            .await;
        self.http
            .post(format!("{}/auth/introspect", self.address))
            .basic_auth(client_id, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Asserts the RFC 6749 §5.2 error shape and returns the error code.
pub async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status for expected `{code}`"
    );
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"], code, "body: {body}");
    assert!(body["error_description"].is_string(), "body: {body}");
    body
}

/// Runs the `tessera` binary as an operator would, against `app`'s database.
pub fn tessera(app: Option<&TestApp>, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    // Not the repository: the binary needs no config/ beside it.
    command
        .current_dir(std::env::temp_dir())
        .args(args)
        .env_remove("TESSERA_ENV")
        .env_remove("RUST_LOG");
    if let Some(app) = app {
        command.env("TESSERA__DATABASE__URL", &app.db.url);
    }
    command
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run tessera");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Polls until `attempt` succeeds and returns how long that took (callers
/// assert their bound); fails after five seconds. For changes that reach an instance asynchronously
/// (client changes arrive through NOTIFY).
pub async fn time_until<F, Fut>(mut attempt: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if attempt().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the change never took effect");
}

/// A lock held by another session until released, as a stalled or busy
/// database would hold it.
pub struct Held(PgConnection);

impl Held {
    pub async fn lock(url: &str, statement: &'static str) -> Held {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
        Held(conn)
    }

    pub async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
    }
}

/// A TCP path to Postgres that can be frozen: while frozen, every byte is
/// held (a silent network partition: no reset, no error).
#[derive(Clone)]
pub struct Partition(Arc<std::sync::atomic::AtomicBool>);

impl Partition {
    pub fn freeze(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_frozen(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Another instance on `db` whose every connection to Postgres (pool and
/// listener) goes through a freezable proxy.
pub async fn spawn_behind_partition(
    db: Arc<TestDatabase>,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, Partition) {
    let url = reqwest::Url::parse(&db.url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let partition = Partition(Arc::default());
    let switch = partition.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(forward(client_read, server_write, switch.clone()));
            tokio::spawn(forward(server_read, client_write, switch.clone()));
        }
    });
    let mut proxied = url.clone();
    proxied.set_port(Some(port)).unwrap();
    let app = spawn_on(db, |s| {
        s.database.url = Some(proxied.to_string().into());
        s.database.request_timeout = Duration::from_millis(500);
        configure(s);
    })
    .await;
    (app, partition)
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    partition: Partition,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            return;
        }
        while partition.is_frozen() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
