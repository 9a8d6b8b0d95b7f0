//! HTTP: routes, extractors and handlers. Handlers read "now" once and hand
//! it to the domain code.

mod admin;
mod bearer;
mod body;
mod client_auth;
mod health;
mod introspect;
mod revocations;
mod revoke;
mod token;
mod wellknown;

use actix_web::{HttpResponse, Route, web};
use serde_json::json;

/// Routes of the public listener.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/token", web::post().to(token::token)))
        .service(resource(
            "/.well-known/jwks.json",
            web::get().to(wellknown::jwks),
        ))
        .service(resource(
            "/.well-known/openid-configuration",
            web::get().to(wellknown::metadata),
        ))
        .service(resource(
            "/.well-known/oauth-authorization-server",
            web::get().to(wellknown::metadata),
        ))
        .service(resource("/healthz", web::get().to(health::healthz)))
        .service(resource("/readyz", web::get().to(health::readyz)))
        .service(resource("/auth/revoke", web::post().to(revoke::revoke)))
        .service(resource(
            "/auth/introspect",
            web::post().to(introspect::introspect),
        ))
        .service(resource(
            "/auth/revocations",
            web::get().to(revocations::feed),
        ));
}

/// Routes of the admin listener.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    admin::routes(cfg);
    cfg.service(resource("/healthz", web::get().to(health::healthz)))
        .service(resource("/readyz", web::get().to(health::readyz)));
}

/// A path with one method; any other method gets a JSON 405.
fn resource(path: &str, route: Route) -> actix_web::Resource {
    web::resource(path).route(route).default_service(web::to(|| async {
        HttpResponse::MethodNotAllowed()
            .json(json!({"error": "method_not_allowed", "error_description": "method not allowed on this path"}))
    }))
}

/// Everything that matches no route.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(json!({"error": "not_found", "error_description": "no such endpoint"}))
}
