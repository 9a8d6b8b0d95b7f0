//! Discovery: the JWKS (RFC 7517) and authorization-server metadata (RFC 8414).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::GrantType;
use crate::keys::Rendered;
use crate::state::AppState;

/// Served from bytes rendered once per key set, with a strong ETag, so a
/// verifier revalidating its cache gets a bodiless 304.
pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let rendered = state.keys.jwks_rendered(state.clock.now());
    let max_age = state.settings.keys.jwks_max_age.as_secs();
    serve(&req, &rendered, format!("public, max-age={max_age}"))
}

/// Served at both well-known names, rendered once per key set. It lists
/// only what is implemented: no authorization endpoint, so no response types.
/// `tessera_max_access_token_lifetime` (seconds, `tokens.max_access_ttl`) is
/// Tessera's own (RFC 8414 §2 allows more): no access token it issues has
/// a longer `exp - iat`, so verifiers can refuse any that does.
pub async fn metadata(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let settings = &state.settings;
    let rendered = state.keys.metadata_rendered(|loaded| {
        let mut algorithms: Vec<&str> = loaded.iter().map(|a| a.as_str()).collect();
        algorithms.push(settings.keys.algorithm.as_str());
        algorithms.sort_unstable();
        algorithms.dedup();
        render_metadata(
            settings.issuer.trim_end_matches('/'),
            &algorithms,
            settings.tokens.longest_access().as_secs(),
        )
    });
    serve(&req, &rendered, "public, max-age=3600".to_owned())
}

/// A rendered document, or `304` when `If-None-Match` names it.
fn serve(req: &HttpRequest, rendered: &Rendered, cache_control: String) -> HttpResponse {
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| rendered.matches(v));
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, rendered.etag.clone()))
        .insert_header((header::CACHE_CONTROL, cache_control));
    if unchanged {
        return response.finish();
    }
    response
        .content_type("application/json")
        .body(rendered.body.clone())
}

fn render_metadata(issuer: &str, algorithms: &[&str], max_access_lifetime: u64) -> Vec<u8> {
    let metadata = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/auth/token"),
        "authorization_challenge_endpoint": format!("{issuer}/auth/challenge"),
        "code_challenge_methods_supported": ["S256"],
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
        "tessera_max_access_token_lifetime": max_access_lifetime,
        "dpop_signing_alg_values_supported": tessera_dpop::ALGORITHMS,
    });
    serde_json::to_vec(&metadata).unwrap_or_default()
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
