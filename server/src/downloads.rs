//! Files the browser downloads, authenticated by the session cookie (the REST API has the same
//! downloads for tokens).

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tower_sessions::Session;

use crate::http::AppState;

/// `GET /downloads/apps/{name}/backups/{id}`: one of the caller's app's snapshots as a tar.
pub async fn backup(
    State(s): State<AppState>,
    session: Session,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let result = async {
        let actor = s.pier.require_actor(&session).await?;
        let id: i64 = id.parse().map_err(|_| pier_core::Error::NotFound)?;
        let snap = s.pier.backup(&actor, &name, id).await?;
        crate::backup::tar_download(&s.pier, &name, &snap).await
    }
    .await;
    result.unwrap_or_else(|e| {
        e.log();
        (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.public_message(),
        )
            .into_response()
    })
}
