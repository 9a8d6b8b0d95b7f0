//! The change listener's own connection (`database.listen_url`): what a
//! deployment behind a transaction-mode pooler points straight at Postgres.

use std::time::Duration;

use secrecy::SecretString;

use crate::helpers::{captured_logs, spawn_app_with, spawn_on};

#[tokio::test]
async fn the_listener_connects_where_listen_url_says_and_says_so() {
    // A port nothing listens on: the pool works, the listener never does.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cut_off = spawn_app_with(|s| {
        s.database.listen_url = Some(SecretString::from(format!(
            "postgres://postgres@127.0.0.1:{port}/nowhere"
        )))
    })
    .await;
    // The same database, reached by the listener through its own URL.
    let url = cut_off.db.url.clone();
    let listening = spawn_on(cut_off.db.clone(), move |s| {
        s.database.listen_url = Some(SecretString::from(url))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(listening.state.denylist.is_current());
    // Without its listener an instance cannot vouch for its mirrors: they
    // go unconfirmed, and checks ask Postgres (see `sync`).
    assert!(!cut_off.state.denylist.is_current());
    // Where it connects is logged, never with a password.
    let logs = captured_logs();
    assert!(
        logs.contains(&format!(
            "127.0.0.1:{port} (database `nowhere`, user `postgres`) (database.listen_url)"
        )),
        "{logs}"
    );
}
