//! The OpenAPI 3 document, generated from the handlers' annotations, at `/api/v1/openapi.json`.

use axum::{extract::State, http::header, routing::get, Router};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use super::{
    apps, audit, backups, domains, nodes, notify, registries, tags, tokens, users, ErrorBody,
    ErrorDetail, FieldMessage,
};
use crate::http::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pier API",
        version = "1",
        description = "Everything a tenant can do in the browser, for scripts. Authenticate with \
                       a personal access token: `Authorization: Bearer pier_…`."
    ),
    paths(
        tokens::list, tokens::create, tokens::revoke,
        audit::list, audit::settings, audit::set_settings,
        notify::channels, notify::set_channels, notify::test, notify::deliveries,
        notify::smtp, notify::set_smtp, notify::delete_smtp,
        tags::show, tags::set, tags::check, tags::new_webhook, tags::hook,
        users::list, users::create, users::update, users::remove,
        users::reset_two_factor, users::two_factor_policy, users::set_two_factor_policy,
        apps::list, apps::create, apps::show, apps::update, apps::remove,
        apps::start, apps::stop, apps::restart, apps::redeploy, apps::rollback,
        apps::deployments, apps::logs, apps::metrics, apps::volumes, apps::delete_volume,
        backups::list, backups::create, backups::show, backups::restore, backups::restore_status,
        backups::download, backups::policy, backups::set_policy,
        backups::target, backups::set_target, backups::delete_target, backups::back_up_pier,
        registries::list, registries::set, registries::remove,
        domains::list, domains::create, domains::show, domains::update, domains::remove, domains::dns, domains::retry, domains::proof_token, domains::verify,
        nodes::list, nodes::update,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, FieldMessage,
        tags::ImageUpdatesOut, tags::CheckOut, tags::FollowBody,
        audit::AuditEntryOut, audit::ActorOut, audit::ObjectOut, audit::AuditPageOut, audit::AuditSettings,
        users::TwoFactorPolicy,
        notify::ChannelsOut, notify::ChannelsIn, notify::DeliveryOut, notify::SmtpOut, notify::SmtpIn,
        apps::AppOut, apps::EnvOut, apps::RolloutOut, apps::PullOut, apps::DeploymentOut,
        apps::MetricOut, apps::NewApp, apps::PatchApp, apps::RollbackBody,
        apps::AppVolumeOut, apps::VolumeBody, apps::VolumeOut,
        backups::SnapshotOut, backups::RestoreOut, backups::PolicyOut, backups::BackupOut,
        backups::PolicyBody, backups::TargetOut, backups::TargetBody, backups::PierBackupOut,
        registries::RegistryOut, registries::RegistryLogin,
        domains::DomainOut, domains::NewDomain, domains::PatchDomain, domains::DnsOut, domains::CertificateOut, domains::ProofOut, domains::ProofTokenOut,
        nodes::NodesOut, nodes::NodeOut, nodes::PatchNode,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "tokens", description = "Your personal access tokens"),
        (name = "users", description = "User administration (admin scope)"),
        (name = "apps", description = "Your apps, their deployments, logs and metrics"),
        (name = "volumes", description = "Your persistent volumes, kept ones included"),
        (name = "backups", description = "Snapshots of your apps' volumes, restores and backup policies"),
        (name = "registries", description = "Your logins for private image registries"),
        (name = "domains", description = "Your domains and the apps they route to"),
        (name = "audit", description = "Who changed what, when and from where"),
        (name = "nodes", description = "The machines of the Docker Swarm Pier runs on (admin scope)"),
        (name = "notifications", description = "Where a person's notifications go, their deliveries, the mail server"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|State(s): State<AppState>| async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                s.panel.api_doc.to_string(),
            )
        }),
    )
}
