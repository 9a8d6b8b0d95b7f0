//! Discovery: the JWKS (RFC 7517) and authorization-server metadata (RFC 8414).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::domain::GrantType;
use crate::state::AppState;

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let jwks = state.keys.jwks(state.clock.now());
    let max_age = state.settings.keys.jwks_max_age.as_secs();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, format!("public, max-age={max_age}")))
        .json(jwks)
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
