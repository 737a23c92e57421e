//! Live streams for the browser (server-sent events), authenticated by the session cookie.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures_util::StreamExt;
use serde::Deserialize;
use tower_sessions::Session;

use crate::http::AppState;

#[derive(Deserialize)]
pub struct LogQuery {
    tail: Option<usize>,
}

/// `GET /events/apps/{name}/logs`: the last lines, then new ones, as `stdout`/`stderr` events.
pub async fn app_logs(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let result = async {
        let actor = s.pier.require_actor(&session).await?;
        let id = session.id().map(|id| id.to_string()).unwrap_or_default();
        s.pier
            .log_stream(
                &actor,
                pier_core::logs::Credential::Session(id),
                &name,
                q.tail.unwrap_or(pier_core::apps::DEFAULT_LOG_TAIL),
                true,
            )
            .await
    }
    .await;
    match result {
        Ok(lines) => {
            // When the container's log ends (it stopped, or was replaced), say so: the page then
            // reconnects after a pause instead of at once.
            let events = lines
                .take_while(|l| std::future::ready(l.is_ok()))
                .filter_map(|l| async move { l.ok() })
                .map(|l| Ok::<_, Infallible>(Event::default().event(l.stream).data(l.text)))
                .chain(futures_util::stream::once(async {
                    Ok(Event::default().event("end").data("the log ended"))
                }));
            Sse::new(events)
                .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
                .into_response()
        }
        Err(e) => {
            e.log();
            (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.public_message(),
            )
                .into_response()
        }
    }
}
