//! Distrusted signing keys through the kit: a `distrusted_key` entry of the
//! stream or feed refuses the key's tokens at once, while the cached JWK
//! Set still holds the key, and no later fetch of a set that still lists it
//! (a stale copy) brings it back; the key that replaces it is picked up
//! through the kid-miss refetch.

use actix_web::dev::Payload;
use actix_web::http::header::WWW_AUTHENTICATE;
use actix_web::test::TestRequest;
use actix_web::{FromRequest, ResponseError, web};
use serde_json::{Value, json};

use crate::denylist::Entry;
use crate::inner::unix_now;
use crate::issuer::Endpoints;
use crate::keys::parse_key;
use crate::testing::{claims, inner, serve_json, sign_as, signing_jwk};
use crate::{Error, Invalid, VerifiedToken, Verifier};

fn refused(result: Result<crate::Claims, Error>) -> Invalid {
    match result {
        Err(Error::InvalidToken(why)) => why,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

fn sorted(mut kids: Vec<String>) -> Vec<String> {
    kids.sort();
    kids
}

#[tokio::test]
async fn a_distrusted_kid_is_refused_with_the_key_cached_and_never_loaded_again() {
    let (old_signer, old_jwk) = signing_jwk("old");
    let (new_signer, new_jwk) = signing_jwk("new");
    let inner = inner();
    // The set as fetched before the distrust: the old key alone.
    inner.keys.insert("old", parse_key(&old_jwk).unwrap());
    // What the JWKS URL serves from now on still lists the old key (a stale
    // copy at a CDN, say) beside the one that replaced it.
    let jwks_uri = serve_json(json!({"keys": [old_jwk, new_jwk]}));
    inner
        .endpoints
        .set(Endpoints {
            jwks_uri,
            token_endpoint: String::new(),
            feed: String::new(),
            stream: String::new(),
            max_access_token_lifetime: None,
        })
        .unwrap();
    let verifier = Verifier::from_inner(inner);
    let old = sign_as(&old_signer, "old", &claims(unix_now())).0;
    assert!(verifier.verify(&old).await.is_ok());

    // The stream's event, as Tessera sends it.
    let event: Entry = serde_json::from_str(r#"{"kind":"distrusted_key","kid":"old"}"#).unwrap();
    verifier.inner().apply([event]);
    assert_eq!(refused(verifier.verify(&old).await), Invalid::DistrustedKey);
    // Refused by the entry alone: the key is still cached, nothing fetched.
    assert_eq!(verifier.key_ids(), ["old"]);
    assert_eq!(verifier.stats().jwks_fetches, 0);
    assert_eq!(verifier.health().distrusted_keys, 1);

    // Answered as any other invalid token, saying nothing more.
    let request = TestRequest::get()
        .append_header(("authorization", format!("Bearer {old}")))
        .app_data(web::Data::new(verifier.clone()))
        .to_http_request();
    let error = VerifiedToken::from_request(&request, &mut Payload::None)
        .await
        .unwrap_err();
    let response = error.error_response();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers().get(WWW_AUTHENTICATE).unwrap(),
        r#"Bearer error="invalid_token""#
    );
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error_description"],
        "the access token is not valid"
    );

    // The replacement signs at once: its kid is unknown until the refetch,
    // which loads it and leaves the distrusted key out of the stale set.
    let new = sign_as(&new_signer, "new", &claims(unix_now())).0;
    assert!(verifier.verify(&new).await.is_ok());
    assert_eq!(verifier.stats().jwks_fetches, 1);
    assert_eq!(sorted(verifier.key_ids()), ["new"]);
    assert_eq!(refused(verifier.verify(&old).await), Invalid::DistrustedKey);
}

#[test]
fn a_distrusted_kid_is_refused_before_its_key_is_looked_up() {
    let (signer, jwk) = signing_jwk("k1");
    let inner = inner();
    let now = unix_now();
    let token = sign_as(&signer, "k1", &claims(now)).0;
    inner.apply([Entry::DistrustedKey { kid: "k1".into() }]);
    // Not cached: still the distrust, not an unknown kid owed a refetch.
    assert!(matches!(
        inner.verify_bearer(&token, now),
        Err(crate::inner::Lookup::Failed(Error::InvalidToken(
            Invalid::DistrustedKey
        )))
    ));
    inner.keys.insert("k1", parse_key(&jwk).unwrap());
    assert!(matches!(
        inner.verify_bearer(&token, now),
        Err(crate::inner::Lookup::Failed(Error::InvalidToken(
            Invalid::DistrustedKey
        )))
    ));
    // Another key's tokens are untouched.
    let (other_signer, other_jwk) = signing_jwk("k2");
    inner.keys.insert("k2", parse_key(&other_jwk).unwrap());
    let other = sign_as(&other_signer, "k2", &claims(now)).0;
    assert!(inner.verify_bearer(&other, now).is_ok());
}
