//! Discovery: the JWKS (RFC 7517) and authorization-server metadata (RFC 8414).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::GrantType;
use crate::state::AppState;

/// Served from bytes rendered once per key set, with a strong ETag, so a
/// verifier revalidating its cache gets a bodiless 304.
pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let rendered = state.keys.jwks_rendered(state.clock.now());
    let max_age = state.settings.keys.jwks_max_age.as_secs();
    let cache_control = format!("public, max-age={max_age}");
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| rendered.matches(v));
    if unchanged {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, rendered.etag.clone()))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((header::ETAG, rendered.etag.clone()))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .content_type("application/json")
        .body(rendered.body.clone())
}

/// Served at both well-known names. It lists only what is implemented:
/// no authorization endpoint, so no response types.
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.settings.issuer.trim_end_matches('/');
    let algorithms: Vec<&str> = {
        let mut algs: Vec<&str> = state
            .keys
            .list(state.clock.now())
            .iter()
            .map(|k| k.algorithm.as_str())
            .collect();
        algs.push(state.settings.keys.algorithm.as_str());
        algs.sort_unstable();
        algs.dedup();
        algs
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")))
        .json(json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/auth/token"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
            "revocation_endpoint": format!("{issuer}/auth/revoke"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint": format!("{issuer}/auth/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [],
            "access_token_signing_alg_values_supported": algorithms,
        }))
}

/// The API description, for generating clients.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/openapi.yaml"
        )))
}
