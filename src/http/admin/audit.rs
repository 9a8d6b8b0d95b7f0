use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use crate::error::Error;
use crate::state::AppState;

const MAX_PAGE: i64 = 200;

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// Newest first; pass `next_cursor` as `before` for the next page.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn page(
    admin: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let query: PageQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| Error::invalid_request("malformed query string"))?;
    let number = |raw: Option<String>, name: &str| -> Result<Option<i64>, Error> {
        raw.map(|r| {
            r.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::invalid_request(format!("{name} must be a positive integer")))
        })
        .transpose()
    };
    let limit = number(query.limit, "limit")?.unwrap_or(50).min(MAX_PAGE);
    let before = number(query.before, "before")?;
    let entries = state
        .ops()
        .audit_page(&admin.actor, before, limit, admin.now)
        .await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "entries": entries, "next_cursor": next })))
}
