//! `GET /auth/revocations/stream`: Server-Sent Events of the denylist.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{
    TestApp, assert_oauth_error, spawn_app, spawn_app_with, spawn_behind_partition,
};

/// One item read from an event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event {
        id: Option<String>,
        event: String,
        data: Value,
    },
    Comment(String),
}

/// A minimal Server-Sent Events reader over a reqwest response.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    pub fn new(response: reqwest::Response) -> Sse {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next block (event or comment line), or `None` when the stream
    /// ends; panics if nothing arrives within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Item> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(item) = self.parse_one() {
                return Some(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("nothing on the stream within {limit:?}"))
                .ok()
                .flatten()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, skipping comments and field-only blocks.
    pub async fn next_event(&mut self, limit: Duration) -> Option<(Option<String>, String, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Item::Event { id, event, data } => return Some((id, event, data)),
                Item::Comment(_) => continue,
            }
        }
    }

    fn parse_one(&mut self) -> Option<Item> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data, mut comment) = (None, None, None, None);
            for line in block.lines() {
                if let Some(text) = line.strip_prefix(':') {
                    comment = Some(text.trim().to_owned());
                } else if let Some((field, value)) = line.split_once(": ") {
                    match field {
                        "id" => id = Some(value.to_owned()),
                        "event" => event = Some(value.to_owned()),
                        "data" => data = Some(serde_json::from_str(value).unwrap()),
                        _ => {}
                    }
                }
            }
            if let Some(data) = data {
                return Some(Item::Event {
                    id,
                    event: event.unwrap_or_else(|| "message".into()),
                    data,
                });
            }
            if let Some(comment) = comment {
                return Some(Item::Comment(comment));
            }
        }
    }
}

pub async fn open(
    app: &TestApp,
    token: &str,
    since: Option<&str>,
    last_id: Option<&str>,
) -> reqwest::Response {
    let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
    let mut request = app
        .http
        .get(format!("{}/auth/revocations/stream{query}", app.address))
        .bearer_auth(token);
    if let Some(id) = last_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

async fn revoke(app: &TestApp, client_id: &str, token: &str) {
    let response = app
        .http
        .post(format!("{}/auth/revoke", app.address))
        .form(&[("token", token), ("client_id", client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn sid_of(token: &str) -> String {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .unwrap()
        .claims["sid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_stream_sends_what_is_live_then_revocations_made_on_any_instance_within_a_second() {
    let a = spawn_app().await;
    let user = a.seed().await;
    let b = a.spawn_second_instance().await;
    let reader = a.service_token("gateway", &["revocations:read"]).await;
    let first = a.login().await;
    revoke(&a, "mobile", first["access_token"].as_str().unwrap()).await;

    let mut stream = Sse::new(open(&a, &reader, None, None).await);
    let (id, event, data) = stream.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(event, "revocation");
    assert_eq!(data["kind"], "session");
    assert_eq!(data["sid"], sid_of(first["access_token"].as_str().unwrap()));
    assert!(data["exp"].is_i64());
    let first_seq: i64 = id.unwrap().parse().unwrap();

    // A log-out-everywhere on the other instance: its logins, then the user.
    let second = a.login().await;
    let admin = b.admin_token().await;
    let started = Instant::now();
    let response = b
        .admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (id, _, data) = stream.next_event(Duration::from_secs(1)).await.unwrap();
    assert_eq!(data["kind"], "session");
    assert_eq!(
        data["sid"],
        sid_of(second["access_token"].as_str().unwrap())
    );
    let (last, _, data) = stream.next_event(Duration::from_secs(1)).await.unwrap();
    eprintln!(
        "the stream on A delivered B's revocation after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        data,
        serde_json::json!({"kind": "user", "sub": user.to_string(), "not_before": data["not_before"]})
    );
    assert!(data["not_before"].is_i64());
    let (id, last): (i64, i64) = (id.unwrap().parse().unwrap(), last.unwrap().parse().unwrap());
    assert!(
        first_seq < id && id < last,
        "ids are the entries' seq, in order"
    );

    // A service token's revocation is an access_token entry (by jti).
    let secret = a
        .create_confidential_client("billing", &["client_credentials"], &["reports"])
        .await;
    let service: Value = a
        .client_token("billing", &secret, None)
        .await
        .json()
        .await
        .unwrap();
    let service = service["access_token"].as_str().unwrap();
    b.http
        .post(format!("{}/auth/revoke", b.address))
        .basic_auth("billing", Some(&secret))
        .form(&[("token", service)])
        .send()
        .await
        .unwrap();
    let (_, _, data) = stream.next_event(Duration::from_secs(1)).await.unwrap();
    let jti = jsonwebtoken::dangerous::insecure_decode::<Value>(service)
        .unwrap()
        .claims["jti"]
        .clone();
    assert_eq!(data["kind"], "access_token");
    assert_eq!(data["jti"], jti);
}

#[tokio::test]
async fn a_reconnect_resumes_after_its_cursor_and_bad_cursors_are_refused() {
    let app = spawn_app().await;
    app.seed().await;
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    let mut sids = Vec::new();
    for _ in 0..3 {
        let session = app.login().await;
        let access = session["access_token"].as_str().unwrap();
        sids.push(sid_of(access));
        revoke(&app, "mobile", access).await;
    }
    let mut all = Sse::new(open(&app, &reader, None, None).await);
    let mut ids = Vec::new();
    for sid in &sids {
        let (id, _, data) = all.next_event(Duration::from_secs(5)).await.unwrap();
        assert_eq!(&data["sid"], sid);
        ids.push(id.unwrap());
    }

    // `Last-Event-ID` (what EventSource sends on reconnect) wins over `since`.
    let mut resumed = Sse::new(open(&app, &reader, Some("0"), Some(&ids[0])).await);
    let (id, _, _) = resumed.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(id.as_ref(), Some(&ids[1]));
    let mut resumed = Sse::new(open(&app, &reader, Some(&ids[1]), None).await);
    let (id, _, _) = resumed.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(id.as_ref(), Some(&ids[2]));

    // Ahead of the newest entry: not this issuer's cursor.
    let ahead = (ids[2].parse::<i64>().unwrap() + 1).to_string();
    let error = assert_oauth_error(
        open(&app, &reader, None, Some(&ahead)).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("since=0")
    );
    for bad in ["-1", "soon", "9223372036854775808"] {
        assert_oauth_error(
            open(&app, &reader, Some(bad), None).await,
            400,
            "invalid_request",
        )
        .await;
        assert_oauth_error(
            open(&app, &reader, None, Some(bad)).await,
            400,
            "invalid_request",
        )
        .await;
    }

    // Entries after a cursor pruned meanwhile had expired: the cursor still
    // resumes (anyone could otherwise send every follower to reload the
    // whole feed by revoking a token just before it expires), and what is
    // new after it arrives.
    app.advance_clock(Duration::from_secs(601));
    tessera::store::revocations::prune(&app.pool, app.state.clock.now())
        .await
        .unwrap();
    let reader = app.service_token("gateway-2", &["revocations:read"]).await;
    let mut old = Sse::new(open(&app, &reader, None, Some(&ids[0])).await);
    let session = app.login().await;
    let access = session["access_token"].as_str().unwrap();
    revoke(&app, "mobile", access).await;
    let (_, _, data) = old.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(data["sid"], sid_of(access));
    let newest = ids[2].clone();
    assert_eq!(open(&app, &reader, Some(&newest), None).await.status(), 200);
}

#[tokio::test]
async fn subscribers_are_bounded_per_instance_and_per_client() {
    let app = spawn_app_with(|s| {
        s.revocation.max_subscribers = 3;
        s.revocation.max_subscribers_per_client = 2;
        // No keep-alive within the test: a slot must not wait for a write
        // to find its reader gone.
        s.revocation.stream_keepalive = Duration::from_secs(60);
    })
    .await;
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    let mut one = Sse::new(open(&app, &reader, None, None).await);
    let _two = Sse::new(open(&app, &reader, None, None).await);
    // One client cannot take every slot...
    let refused = open(&app, &reader, None, None).await;
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_oauth_error(refused, 503, "temporarily_unavailable").await;
    let other = app.service_token("billing", &["revocations:read"]).await;
    let _three = Sse::new(open(&app, &other, None, None).await);
    // ...and the instance has only so many.
    let third_client = app.service_token("search", &["revocations:read"]).await;
    assert_oauth_error(
        open(&app, &third_client, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;

    // A reader that hangs up frees its slot at once, not at the next write.
    for _ in 0..3 {
        let started = Instant::now();
        drop(one);
        let mut reopened = None;
        while reopened.is_none() {
            let response = open(&app, &reader, None, None).await;
            if response.status() == 200 {
                reopened = Some(Sse::new(response));
            } else {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "the slot was never freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        one = reopened.unwrap();
    }
}

#[tokio::test]
async fn keep_alives_flow_and_the_stream_ends_when_its_token_is_revoked() {
    let app = spawn_app_with(|s| s.revocation.stream_keepalive = Duration::from_secs(1)).await;
    let secret = app
        .create_confidential_client("gateway", &["client_credentials"], &["revocations:read"])
        .await;
    let token: Value = app
        .client_token("gateway", &secret, None)
        .await
        .json()
        .await
        .unwrap();
    let reader = token["access_token"].as_str().unwrap();
    let mut stream = Sse::new(open(&app, reader, None, None).await);
    assert_eq!(
        stream.next(Duration::from_secs(1)).await,
        Some(Item::Comment("connected".into()))
    );
    assert_eq!(
        stream.next(Duration::from_secs(3)).await,
        Some(Item::Comment("keep-alive".into()))
    );

    // Revoking the reader's own token ends its stream right after the entry.
    app.http
        .post(format!("{}/auth/revoke", app.address))
        .basic_auth("gateway", Some(&secret))
        .form(&[("token", reader)])
        .send()
        .await
        .unwrap();
    let (_, _, data) = stream.next_event(Duration::from_secs(1)).await.unwrap();
    assert_eq!(data["kind"], "access_token");
    assert_eq!(stream.next(Duration::from_secs(2)).await, None);
    assert_oauth_error(open(&app, reader, None, None).await, 401, "invalid_token").await;
}

#[tokio::test]
async fn the_stream_needs_a_token_with_the_feed_scope() {
    let app = spawn_app().await;
    app.seed().await;
    let user = app.login().await;
    let response = app
        .http
        .get(format!("{}/auth/revocations/stream", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let scoped = open(&app, user["access_token"].as_str().unwrap(), None, None).await;
    assert_oauth_error(scoped, 403, "insufficient_scope").await;
    assert_oauth_error(
        open(&app, "not-a-token", None, None).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn an_instance_cut_off_from_postgres_ends_its_streams_and_opens_none() {
    let a = spawn_app().await;
    let (cut_off, partition) = spawn_behind_partition(a.db.clone(), |s| {
        s.revocation.stream_keepalive = Duration::from_millis(200);
    })
    .await;
    let reader = a.service_token("gateway", &["revocations:read"]).await;
    let mut stream = Sse::new(open(&cut_off, &reader, None, None).await);
    assert_eq!(
        stream.next(Duration::from_secs(2)).await,
        Some(Item::Comment("connected".into()))
    );
    assert_eq!(
        stream.next(Duration::from_secs(2)).await,
        Some(Item::Comment("keep-alive".into()))
    );

    // Frozen, the instance hears of nothing: its keep-alives must stop
    // vouching for a list that may be behind. The denylist goes stale after
    // three seconds without a confirmed heartbeat; the stream ends then.
    partition.freeze();
    let frozen = Instant::now();
    while let Some(item) = stream.next(Duration::from_secs(6)).await {
        assert_eq!(item, Item::Comment("keep-alive".into()));
        assert!(frozen.elapsed() < Duration::from_secs(6), "still vouching");
    }
    let took = frozen.elapsed();
    assert!(took < Duration::from_secs(5), "the stream lasted {took:?}");
    assert!(took > Duration::from_secs(2), "ended early: {took:?}");
    // And no new stream starts there.
    assert_oauth_error(
        open(&cut_off, &reader, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;

    // Back in touch, it streams again.
    partition.heal();
    let started = Instant::now();
    loop {
        let response = open(&cut_off, &reader, None, None).await;
        if response.status() == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn after_a_prune_the_feeds_cursor_resumes_on_the_stream() {
    let app = spawn_app().await;
    app.seed().await;
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    for _ in 0..2 {
        let session = app.login().await;
        revoke(&app, "mobile", session["access_token"].as_str().unwrap()).await;
    }
    let newest = tessera::store::revocations::last_seq(&app.pool)
        .await
        .unwrap();
    // Everything expires and is pruned: the quiet state of a deployment.
    app.advance_clock(Duration::from_secs(601));
    tessera::store::revocations::prune(&app.pool, app.state.clock.now())
        .await
        .unwrap();
    let reader_now = app.service_token("gateway-2", &["revocations:read"]).await;
    drop(reader);

    for since in ["0", "1"] {
        let page: Value = app
            .http
            .get(format!("{}/auth/revocations?since={since}", app.address))
            .bearer_auth(&reader_now)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["revoked_sessions"], serde_json::json!([]));
        assert_eq!(page["has_more"], false);
        let next = page["next_cursor"].as_str().unwrap().to_owned();
        assert_eq!(next, newest.to_string(), "the cursor moves to the horizon");
        // The stream takes the feed's cursor, and no cursor at all.
        assert_eq!(
            open(&app, &reader_now, Some(&next), None).await.status(),
            200
        );
    }
    let mut full = Sse::new(open(&app, &reader_now, None, None).await);
    assert_eq!(
        full.next(Duration::from_secs(2)).await,
        Some(Item::Comment("connected".into()))
    );
    // So does a cursor below the horizon (what it skipped had expired).
    assert_eq!(open(&app, &reader_now, Some("1"), None).await.status(), 200);

    // A page cut short by `limit` does not jump past live entries.
    let session = app.login().await;
    revoke(&app, "mobile", session["access_token"].as_str().unwrap()).await;
    let session = app.login().await;
    revoke(&app, "mobile", session["access_token"].as_str().unwrap()).await;
    let page: Value = app
        .http
        .get(format!("{}/auth/revocations?since=0&limit=1", app.address))
        .bearer_auth(&reader_now)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_cursor"], (newest + 1).to_string());
}
