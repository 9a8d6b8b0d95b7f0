//! HTTP: routes, extractors and handlers. Handlers read "now" once and hand
//! it to the domain code.

mod admin;
pub(crate) mod bearer;
mod body;
mod challenge;
mod chunked;
mod client_auth;
pub mod client_ip;
mod health;
mod introspect;
mod metrics;
mod mfa;
pub mod peer;
mod proof;
mod revocations;
mod revoke;
mod token;
mod wellknown;

pub use admin::refusals::audit_refusals;
pub use chunked::refuse_chunked;

use actix_web::{HttpResponse, Route, web};

use crate::error::Error;

/// Declares a listener's routes once: the function that registers them and
/// the `(METHOD, path)` table that tests compare with `openapi.yaml`.
macro_rules! route_table {
    ($register:ident, $table:ident { $( $method:ident $path:literal => $handler:path, )* }) => {
        pub const $table: &[(&str, &str)] = &[ $( (stringify!($method), $path), )* ];

        pub fn $register(cfg: &mut web::ServiceConfig) {
            register(cfg, vec![ $( ($path, stringify!($method), web::$method().to($handler), web::head().to($handler)), )* ]);
        }
    };
}

route_table!(public_routes, PUBLIC_ROUTES {
    post "/auth/token" => token::token,
    post "/auth/challenge" => challenge::challenge,
    post "/auth/mfa/totp" => mfa::begin,
    delete "/auth/mfa/totp" => mfa::turn_off,
    post "/auth/mfa/totp/confirm" => mfa::confirm,
    post "/auth/mfa/recovery-codes" => mfa::recovery_codes,
    post "/auth/revoke" => revoke::revoke,
    post "/auth/introspect" => introspect::introspect,
    get "/auth/revocations" => revocations::feed,
    get "/auth/revocations/stream" => revocations::stream,
    get "/.well-known/jwks.json" => wellknown::jwks,
    get "/.well-known/openid-configuration" => wellknown::metadata,
    get "/.well-known/oauth-authorization-server" => wellknown::metadata,
    get "/openapi.yaml" => wellknown::openapi,
    get "/healthz" => health::healthz,
    get "/readyz" => health::readyz,
});

// Only on the admin listener (`http.admin_addr`), never on the public one.
route_table!(admin_routes, ADMIN_ROUTES {
    post "/admin/users" => admin::users::create,
    get "/admin/users" => admin::users::find,
    get "/admin/users/{id}" => admin::users::read,
    post "/admin/users/{id}/disable" => admin::users::disable,
    post "/admin/users/{id}/enable" => admin::users::enable,
    put "/admin/users/{id}/password" => admin::users::set_password,
    post "/admin/users/{id}/revoke" => admin::users::revoke_everywhere,
    post "/admin/users/{id}/unlock" => admin::users::unlock,
    delete "/admin/users/{id}/mfa" => admin::users::reset_mfa,
    put "/admin/users/{id}/claims" => admin::users::set_claims,
    get "/admin/users/{id}/sessions" => admin::sessions::list,
    delete "/admin/users/{id}/sessions/{session_id}" => admin::sessions::revoke,
    post "/admin/tokens/revoke" => admin::tokens::revoke,
    get "/admin/clients" => admin::clients::list,
    post "/admin/clients/{client_id}/disable" => admin::clients::disable,
    post "/admin/clients/{client_id}/enable" => admin::clients::enable,
    post "/admin/clients/{client_id}/secret" => admin::clients::rotate_secret,
    put "/admin/clients/{client_id}/dpop" => admin::clients::set_dpop,
    put "/admin/clients/{client_id}/resources" => admin::clients::set_resources,
    put "/admin/clients/{client_id}/lifetimes" => admin::clients::set_lifetimes,
    put "/admin/clients/{client_id}/claims" => admin::clients::set_claims,
    post "/admin/resources" => admin::resources::create,
    get "/admin/resources" => admin::resources::list,
    delete "/admin/resources" => admin::resources::delete,
    get "/admin/keys" => admin::keys::list,
    post "/admin/keys/rotate" => admin::keys::rotate,
    post "/admin/keys/{kid}/distrust" => admin::keys::distrust,
    get "/admin/audit" => admin::audit::page,
    get "/metrics" => metrics::metrics,
    get "/healthz" => health::healthz,
    get "/readyz" => health::readyz,
});

/// One resource per path with each of its methods (GET also answers
/// HEAD); any other method gets a JSON 405 with `Allow`.
fn register(cfg: &mut web::ServiceConfig, routes: Vec<(&'static str, &'static str, Route, Route)>) {
    let mut paths: Vec<&'static str> = Vec::new();
    for (path, ..) in &routes {
        if !paths.contains(path) {
            paths.push(path);
        }
    }
    let mut routes: Vec<Option<(&'static str, &'static str, Route, Route)>> =
        routes.into_iter().map(Some).collect();
    for path in paths {
        let mut resource = web::resource(path);
        let mut allow = Vec::new();
        for slot in routes.iter_mut() {
            if slot.as_ref().is_none_or(|(p, ..)| *p != path) {
                continue;
            }
            let Some((_, method, route, head)) = slot.take() else {
                continue;
            };
            resource = resource.route(route);
            allow.push(method.to_uppercase());
            if method == "get" {
                resource = resource.route(head);
                allow.push("HEAD".to_owned());
            }
        }
        let allow = allow.join(", ");
        resource = resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { Err::<HttpResponse, _>(Error::MethodNotAllowed { allow }) }
        }));
        cfg.service(resource);
    }
}

/// Everything that matches no route.
pub async fn not_found() -> Result<HttpResponse, Error> {
    Err(Error::NotFound("no such endpoint"))
}
