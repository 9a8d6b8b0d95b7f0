//! Tokens signed with our own key but with claims we would never issue.

use std::time::Duration;

use reqwest::Method;
use tessera::domain::AccessClaims;

use crate::helpers::{TestApp, spawn_app};

fn sign(app: &TestApp, edit: impl FnOnce(&mut AccessClaims)) -> String {
    let now = app.state.clock.now();
    let mut claims = AccessClaims::new(
        "http://tessera.test",
        "tessera",
        "ops".into(),
        "ops",
        "admin revocations:read".into(),
        now,
        Duration::from_secs(600),
    );
    edit(&mut claims);
    claims.sign(&app.state.keys.signer(now).unwrap()).unwrap()
}

#[tokio::test]
async fn tokens_from_the_future_or_living_too_long_are_refused_everywhere() {
    let app = spawn_app().await;
    let now = app.state.clock.now().timestamp();
    let genuine = sign(&app, |_| {});
    let forged = [
        sign(&app, |c| {
            c.iat = now + 86_400;
            c.exp = c.iat + 600;
        }),
        sign(&app, |c| c.nbf = Some(now + 3600)),
        sign(&app, |c| c.exp = now + 10 * 365 * 86_400),
        sign(&app, |c| c.exp = now + 601),
    ];
    let admin_status = |token: String| {
        let request = app.admin(Method::GET, "/admin/keys", &token).send();
        async move { request.await.unwrap().status() }
    };
    assert_eq!(admin_status(genuine.clone()).await, 200);
    assert_eq!(app.introspect(&genuine).await["active"], true);
    for token in forged {
        assert_eq!(admin_status(token.clone()).await, 401);
        assert_eq!(app.introspect(&token).await["active"], false);
        let feed = app
            .http
            .get(format!("{}/auth/revocations", app.address))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(feed.status(), 401);
    }
    // A small clock skew between instances is tolerated.
    let skewed = sign(&app, |c| {
        c.iat = now + 5;
        c.exp = c.iat + 600;
    });
    assert_eq!(admin_status(skewed).await, 200);
}
