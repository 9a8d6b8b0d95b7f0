//! A resource server that verifies Tessera access tokens offline.
//!
//! ```sh
//! export TESSERA_VERIFIER_CLIENT_SECRET=...   # the feed client's secret, never an argument
//! cargo run -p tessera-verifier --example resource_server -- \
//!     --issuer http://localhost:8080 --listen 127.0.0.1:9090 --client-id gateway \
//!     --resource https://orders.example.com/ [--external-url https://api.example.com]
//! curl -H "Authorization: Bearer $TOKEN" localhost:9090/whoami
//! curl -H "Authorization: Bearer $TOKEN" localhost:9090/tickets
//! curl -H "Authorization: DPoP $BOUND_TOKEN" -H "DPoP: $PROOF" localhost:9090/whoami
//! ```
//!
//! `--resource` is this service's resource URI (RFC 8707), as registered
//! with `tessera resource create`: only tokens issued for it (`aud`) are
//! accepted; `tessera` takes the tokens clients get without naming a
//! resource. `GET /whoami` answers the verified claims; `GET /tickets`
//! only users with the role `support` (the `roles` attribute, in tokens of
//! clients that picked it with `tessera client set-claims <client> roles`),
//! `403` for others; `GET /healthz` whether keys and revocations are loaded
//! (503 until they are, or while stale). Tokens living longer than the
//! issuer's longest access-token lifetime (from its metadata) are refused.
//! Both schemes are accepted: bearer tokens, and DPoP-bound tokens (RFC
//! 9449) with a proof whose `htu` is the external URL (default
//! `http://<listen address>`) followed by the path.

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use tessera_verifier::{Config, VerifiedToken, Verifier};

/// The role `GET /tickets` requires.
pub const SUPPORT: &str = "support";

/// The routes, apart from `main` so that tests can mount them.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/whoami", web::get().to(whoami))
        .route("/tickets", web::get().to(tickets))
        .route("/healthz", web::get().to(healthz));
}

async fn whoami(token: VerifiedToken) -> HttpResponse {
    HttpResponse::Ok().json(token.into_claims())
}

/// For the support team only: the role comes from the token itself (the
/// user's `roles` attribute, a list of strings), no call to anyone.
async fn tickets(token: VerifiedToken) -> HttpResponse {
    let roles = token.get::<Vec<String>>("roles").unwrap_or_default();
    if !roles.iter().any(|role| role == SUPPORT) {
        return HttpResponse::Forbidden().json(json!({
            "error": "forbidden",
            "error_description": format!("this call needs the role `{SUPPORT}`"),
        }));
    }
    HttpResponse::Ok().json(json!({
        "user": token.sub,
        "tenant": token.get::<&str>("tenant"),
        "tickets": [],
    }))
}

async fn healthz(verifier: web::Data<Verifier>) -> HttpResponse {
    let health = verifier.health();
    if health.is_ready() {
        HttpResponse::Ok().json(health)
    } else {
        HttpResponse::ServiceUnavailable().json(health)
    }
}

struct Args {
    issuer: String,
    listen: String,
    client_id: String,
    /// This service's resource URI: the tokens' `aud`.
    resource: String,
    /// What clients call this service as: the base of the proofs' `htu`.
    external_url: String,
}

fn parse_args() -> Result<Args, String> {
    let mut issuer = None;
    let mut listen = None;
    let mut client_id = None;
    let mut resource = None;
    let mut external_url = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--issuer" => issuer = Some(value),
            "--listen" => listen = Some(value),
            "--client-id" => client_id = Some(value),
            "--resource" => resource = Some(value),
            "--external-url" => external_url = Some(value),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let listen: String = listen.ok_or("--listen is required")?;
    Ok(Args {
        issuer: issuer.ok_or("--issuer is required")?,
        external_url: external_url.unwrap_or_else(|| format!("http://{listen}")),
        listen,
        client_id: client_id.ok_or("--client-id is required")?,
        resource: resource.ok_or("--resource is required: this service's resource URI")?,
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let usage = "usage: resource_server --issuer <url> --listen <addr> --client-id <id> \
                 --resource <this service's resource URI, or tessera> \
                 [--external-url <url, default http://<listen addr>>]\n\
                 with the client's secret in TESSERA_VERIFIER_CLIENT_SECRET";
    let args = parse_args().map_err(|e| std::io::Error::other(format!("{e}\n{usage}")))?;
    let secret = std::env::var("TESSERA_VERIFIER_CLIENT_SECRET").map_err(|_| {
        std::io::Error::other(format!(
            "TESSERA_VERIFIER_CLIENT_SECRET is not set\n{usage}"
        ))
    })?;
    let config = Config::new(args.issuer, args.resource)
        .feed_client(args.client_id, secret)
        .external_url(args.external_url);
    let verifier = Verifier::start(config).map_err(std::io::Error::other)?;
    println!("listening on {}", args.listen);
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(verifier.clone()))
            .configure(routes)
    })
    .bind(&args.listen)?
    .run()
    .await
}
