//! `/api/v1/domains`: the caller's domains — register, attach to an app, move, detach, delete.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::get,
    Json, Router,
};
use pier_core::{
    certs::CertView,
    dns::DnsCheck,
    domains::{DomainProof, DomainView},
    model::Scope,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, ApiResult, Body, Caller, Page, PageQuery, Q};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/domains", get(list).post(create))
        .route("/domains-proof", get(proof_token))
        .route("/domains/{domain}/verify", axum::routing::post(verify))
        .route("/domains/{domain}", get(show).patch(update).delete(remove))
        .route("/domains/{domain}/dns", get(dns))
        .route(
            "/domains/{domain}/certificate/retry",
            axum::routing::post(retry),
        )
}

/// A domain and where its traffic goes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainOut {
    /// IDNA-normalised (ASCII, lower case).
    #[schema(example = "blog.example.com")]
    domain: String,
    /// The app it is attached to; null when detached.
    app: Option<String>,
    /// Whether HAProxy sends its traffic to a running app now.
    serving: bool,
    certificate: CertificateOut,
    /// Whether you proved the domain yours (it is attached and certified only then).
    verified: bool,
    /// While it is not proven: the TXT record to publish, then `POST …/verify`.
    proof: Option<ProofOut>,
    created_at: String,
    updated_at: String,
}

/// A TXT record named `record` holding `value` proves a domain yours.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofOut {
    #[schema(example = "_pier-challenge.blog.example.com")]
    record: String,
    value: String,
}

impl From<DomainProof> for ProofOut {
    fn from(p: DomainProof) -> Self {
        ProofOut {
            record: p.record,
            value: p.value,
        }
    }
}

/// Your token for domain proofs, and whether this Pier asks for them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofTokenOut {
    /// false when the operator turned proofs off.
    required: bool,
    /// Publish it as the TXT record `_pier-challenge.<your domain>`.
    value: String,
}

impl From<DomainView> for DomainOut {
    fn from(d: DomainView) -> Self {
        DomainOut {
            domain: d.name,
            app: d.app,
            serving: d.serving,
            certificate: d.certificate.into(),
            verified: d.verified,
            proof: d.proof.map(ProofOut::from),
            created_at: format_time(d.created_at),
            updated_at: format_time(d.updated_at),
        }
    }
}

/// The certificate HTTPS serves for a domain.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateOut {
    /// `self-signed` (no CA certificate: ACME off, a wildcard, or not attached), `pending`,
    /// `valid`, `renewing` (a valid one serves while its successor is ordered) or `failed`.
    status: String,
    valid_until: Option<String>,
    /// The CA's own words the last time an order failed.
    error: Option<String>,
    /// When Pier tries again.
    next_try: Option<String>,
}

impl From<CertView> for CertificateOut {
    fn from(c: CertView) -> Self {
        CertificateOut {
            status: c.status,
            valid_until: c.valid_until.map(format_time),
            error: c.error,
            next_try: c.next_try.map(format_time),
        }
    }
}

/// A domain to register, optionally attached to one of your apps at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    #[schema(example = "blog.example.com")]
    domain: String,
    app: Option<String>,
}

/// `app`: an app's name attaches or moves the domain there; null detaches it; absent keeps it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchDomain {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    app: Option<Option<String>>,
}

/// A field that is present (even as null) is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The caller's domains, by name.
#[utoipa::path(get, path = "/api/v1/domains", tag = "domains", operation_id = "list_domains",
    params(PageQuery),
    security(("token" = [])),
    responses((status = 200, body = Page<DomainOut>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<DomainOut>>> {
    caller.require(Scope::Read)?;
    let (page, per_page, skip) = q.bounds()?;
    let offset = i64::try_from(skip).unwrap_or(i64::MAX);
    let (views, total) = s
        .pier
        .list_domains_page(&caller.actor, i64::from(per_page), offset)
        .await?;
    Ok(Json(Page {
        items: views.into_iter().map(DomainOut::from).collect(),
        page,
        per_page,
        total,
    }))
}

/// Registers a domain (409 when anyone on this Pier has it already).
#[utoipa::path(post, path = "/api/v1/domains", tag = "domains", operation_id = "create_domain",
    request_body = NewDomain,
    security(("token" = [])),
    responses((status = 201, body = DomainOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<NewDomain>,
) -> ApiResult<(StatusCode, Json<DomainOut>)> {
    caller.require(Scope::Write)?;
    let d = s
        .pier
        .register_domain(&caller.actor, &b.domain, b.app.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(d.into())))
}

/// One domain.
#[utoipa::path(get, path = "/api/v1/domains/{domain}", tag = "domains", operation_id = "show_domain",
    params(("domain" = String, Path, description = "The domain name")),
    security(("token" = [])),
    responses((status = 200, body = DomainOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(domain): Path<String>,
) -> ApiResult<Json<DomainOut>> {
    caller.require(Scope::Read)?;
    Ok(Json(s.pier.domain(&caller.actor, &domain).await?.into()))
}

/// Attaches the domain to an app, moves it to another, or detaches it.
#[utoipa::path(patch, path = "/api/v1/domains/{domain}", tag = "domains",
    operation_id = "update_domain", request_body = PatchDomain,
    params(("domain" = String, Path, description = "The domain name")),
    security(("token" = [])),
    responses((status = 200, body = DomainOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(domain): Path<String>,
    Body(p): Body<PatchDomain>,
) -> ApiResult<Json<DomainOut>> {
    caller.require(Scope::Write)?;
    let d = match p.app {
        Some(app) => {
            s.pier
                .set_domain_app(&caller.actor, &domain, app.as_deref())
                .await?
        }
        None => s.pier.domain(&caller.actor, &domain).await?,
    };
    Ok(Json(d.into()))
}

/// Deletes the domain; its traffic stops at once.
#[utoipa::path(delete, path = "/api/v1/domains/{domain}", tag = "domains",
    operation_id = "delete_domain",
    params(("domain" = String, Path, description = "The domain name")),
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(domain): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    s.pier.delete_domain(&caller.actor, &domain).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a DNS lookup of the domain says now, and whether that is this server.
#[derive(Debug, Serialize, ToSchema)]
pub struct DnsOut {
    domain: String,
    addresses: Vec<String>,
    /// null when Pier does not know this server's public address, or the name does not resolve.
    points_here: Option<bool>,
    message: String,
}

impl From<DnsCheck> for DnsOut {
    fn from(c: DnsCheck) -> Self {
        DnsOut {
            domain: c.domain,
            addresses: c.addresses.iter().map(ToString::to_string).collect(),
            points_here: c.points_here,
            message: c.message,
        }
    }
}

/// Looks the domain up now (informative: nothing depends on it).
#[utoipa::path(get, path = "/api/v1/domains/{domain}/dns", tag = "domains",
    operation_id = "check_domain_dns",
    params(("domain" = String, Path, description = "The domain name")),
    security(("token" = [])),
    responses((status = 200, body = DnsOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn dns(
    State(s): State<AppState>,
    caller: Caller,
    Path(domain): Path<String>,
) -> ApiResult<Json<DnsOut>> {
    caller.require(Scope::Read)?;
    Ok(Json(
        s.pier
            .check_domain_dns(&caller.actor, &domain)
            .await?
            .into(),
    ))
}

/// Asks for the domain's certificate again now (after a failure, or while pending).
#[utoipa::path(post, path = "/api/v1/domains/{domain}/certificate/retry", tag = "domains",
    operation_id = "retry_certificate",
    params(("domain" = String, Path, description = "The domain name")),
    security(("token" = [])),
    responses((status = 202, body = DomainOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(s): State<AppState>,
    caller: Caller,
    Path(domain): Path<String>,
) -> ApiResult<(StatusCode, Json<DomainOut>)> {
    caller.require(Scope::Write)?;
    s.pier.retry_certificate(&caller.actor, &domain).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(s.pier.domain(&caller.actor, &domain).await?.into()),
    ))
}

/// Your token for domain proofs: before you register or attach a domain, publish it as the TXT
/// record `_pier-challenge.<domain>` (for `*.example.com`: `_pier-challenge.example.com`).
#[utoipa::path(get, path = "/api/v1/domains-proof", tag = "domains",
    operation_id = "domain_proof_token",
    security(("token" = [])),
    responses((status = 200, body = ProofTokenOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn proof_token(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ProofTokenOut>> {
    caller.require(Scope::Read)?;
    Ok(Json(ProofTokenOut {
        required: s.pier.settings().routing.require_domain_proof,
        value: s.pier.domain_proof_token(&caller.actor).await?,
    }))
}

/// Looks the domain's proof record up now and marks the domain proven (422 naming the record
/// and what was found when it does not hold your token yet).
#[utoipa::path(post, path = "/api/v1/domains/{domain}/verify", tag = "domains",
    operation_id = "verify_domain",
    params(("domain" = String, Path, description = "The domain name")),
    security(("token" = [])),
    responses((status = 200, body = DomainOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn verify(
    State(s): State<AppState>,
    caller: Caller,
    Path(domain): Path<String>,
) -> ApiResult<Json<DomainOut>> {
    caller.require(Scope::Write)?;
    Ok(Json(
        s.pier.verify_domain(&caller.actor, &domain).await?.into(),
    ))
}
