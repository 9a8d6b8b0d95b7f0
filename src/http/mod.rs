//! HTTP: routes, extractors and handlers. Handlers read "now" once and hand
//! it to the domain code.

mod body;
mod health;
mod token;
mod wellknown;

use actix_web::web;

/// Routes of the public listener.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/token", web::post().to(token::token))
        .route("/.well-known/jwks.json", web::get().to(wellknown::jwks))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(wellknown::metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            web::get().to(wellknown::metadata),
        )
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz));
}
