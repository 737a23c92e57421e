//! HAProxy's runtime API (the admin socket): route and server changes without a reload. Every
//! argument is checked here again (host names against the domain grammar; backends and servers
//! are named from numbers and addresses), so no command can carry a second one.

use std::{net::SocketAddr, path::Path};

use super::table::{backend_name, server_name, server_options, RUNTIME_POOL};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeApiError {
    #[error("the HAProxy admin socket did not answer: {0}")]
    Io(#[from] std::io::Error),
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    #[error("not a routable host name: {0}")]
    BadHost(String),
    #[error("not a usable file path: {0}")]
    BadPath(String),
}

/// How long one command may take: callers hold the routes while they talk to HAProxy, and a
/// process that takes the connection but never answers must not stall every route change and
/// the supervisor behind them.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// One command, one connection (the socket answers and closes); the answer's text.
pub async fn command(socket: &Path, line: &str) -> Result<String, RuntimeApiError> {
    debug_assert!(!line.contains('\n'), "one command per call");
    exchange(socket, format!("{line}\n")).await
}

/// Sends `text` on a connection of its own and reads the answer, within [`ANSWER_WITHIN`].
async fn exchange(socket: &Path, text: String) -> Result<String, RuntimeApiError> {
    let talk = async {
        let mut s = UnixStream::connect(socket).await?;
        s.write_all(text.as_bytes()).await?;
        // The master socket answers and then waits for more unless our side is closed.
        s.shutdown().await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out.trim().to_owned())
    };
    tokio::time::timeout(ANSWER_WITHIN, talk)
        .await
        .unwrap_or_else(|_| {
            Err(RuntimeApiError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within 5 s",
            )))
        })
}

/// `Ok` when HAProxy's `answer` means it did it; otherwise its refusal of `command`.
fn accepted(ok: bool, command: String, answer: String) -> Result<(), RuntimeApiError> {
    if ok {
        Ok(())
    } else {
        Err(RuntimeApiError::Refused { command, answer })
    }
}

/// `app<id>/e<address>`: the server of `addr` in app `app`'s backend.
fn server_path(app: i64, addr: &SocketAddr) -> String {
    format!("{}/{}", backend_name(app), server_name(addr))
}

/// A command with a multi-line payload (`<<`, ended by an empty line): a PEM bundle here, which
/// may hold only PEM lines (base64 and the BEGIN/END markers), so nothing can follow it.
pub async fn command_with_pem(
    socket: &Path,
    line: &str,
    pem: &str,
) -> Result<String, RuntimeApiError> {
    let ok = pem.lines().all(|l| {
        !l.is_empty()
            && (l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
                || (l.starts_with("-----")
                    && l.ends_with("-----")
                    && l.chars()
                        .all(|c| c.is_ascii_uppercase() || " -".contains(c))))
    });
    if !ok {
        return Err(RuntimeApiError::BadPath("not a PEM bundle".into()));
    }
    exchange(socket, format!("{line} <<\n{pem}\n\n")).await
}

/// A file path as HAProxy commands take it (no spaces, no separators).
pub fn checked_path(p: &Path) -> Result<String, RuntimeApiError> {
    map_path(p)
}

fn map_path(map: &Path) -> Result<String, RuntimeApiError> {
    let p = map.display().to_string();
    if p.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == '#')
    {
        return Err(RuntimeApiError::BadPath(p));
    }
    Ok(p)
}

fn host(h: &str) -> Result<String, RuntimeApiError> {
    let checked =
        pier_core::validate::domain(h, true).map_err(|_| RuntimeApiError::BadHost(h.into()))?;
    if checked != h {
        // Callers pass names as stored (already normalised); anything else is a bug.
        return Err(RuntimeApiError::BadHost(h.into()));
    }
    Ok(checked)
}

/// Points `host` at app `app`'s backend in the running HAProxy (adds or replaces the entry).
pub async fn set_route(
    socket: &Path,
    map: &Path,
    h: &str,
    app: i64,
) -> Result<(), RuntimeApiError> {
    let (map, h, backend) = (map_path(map)?, host(h)?, backend_name(app));
    let set = format!("set map {map} {h} {backend}");
    let answer = command(socket, &set).await?;
    if answer.is_empty() {
        return Ok(());
    }
    accepted(answer.contains("not found"), set, answer)?;
    let add = format!("add map {map} {h} {backend}");
    let answer = command(socket, &add).await?;
    accepted(answer.is_empty(), add, answer)
}

/// Adds `addr` to app `app`'s backend and sends it requests (a server the running HAProxy still
/// holds in maintenance, removed earlier while it had requests, is taken back).
pub async fn add_server(socket: &Path, app: i64, addr: SocketAddr) -> Result<(), RuntimeApiError> {
    let server = server_path(app, &addr);
    let options = server_options(&addr);
    let add = format!("add server {server} {addr}{options}{RUNTIME_POOL}");
    let answer = command(socket, &add).await?;
    let added = answer.contains("New server registered") || answer.contains("Already exists");
    accepted(added, add, answer)?;
    if !options.is_empty() {
        // Checks of a server added at runtime are off until enabled.
        let health = format!("enable health {server}");
        let answer = command(socket, &health).await?;
        accepted(answer.is_empty(), health, answer)?;
    }
    // A server added at runtime starts in maintenance.
    let ready = format!("set server {server} state ready");
    let answer = command(socket, &ready).await?;
    accepted(answer.is_empty(), ready, answer)
}

/// Stops sending app `app`'s requests to `addr` (those under way finish) and deletes the server
/// once it has none. True when it is gone; false while requests keep it in maintenance (the
/// caller tries [`delete_server`] again later).
pub async fn remove_server(
    socket: &Path,
    app: i64,
    addr: SocketAddr,
) -> Result<bool, RuntimeApiError> {
    if !set_state(socket, &server_path(app, &addr), "maint").await? {
        return Ok(true);
    }
    delete_server(socket, app, addr).await
}

/// Puts a server in `state`; false when HAProxy has no such server (gone already).
async fn set_state(socket: &Path, server: &str, state: &str) -> Result<bool, RuntimeApiError> {
    let set = format!("set server {server} state {state}");
    let answer = command(socket, &set).await?;
    if answer.contains("No such server") {
        return Ok(false);
    }
    accepted(answer.is_empty(), set, answer)?;
    Ok(true)
}

/// Deletes a server in maintenance; false while it still has requests under way.
pub async fn delete_server(
    socket: &Path,
    app: i64,
    addr: SocketAddr,
) -> Result<bool, RuntimeApiError> {
    let server = server_path(app, &addr);
    let del = format!("del server {server}");
    let mut answer = command(socket, &del).await?;
    if answer.contains("still has connections") {
        // Idle keep-alive connections count too, and HAProxy only closes a server's idle
        // connections as it enters maintenance: one that went idle after that (its request
        // finished since) stays. Leaving maintenance for `drain` (no new requests either) and
        // entering it again closes them; requests still under way are untouched.
        for state in ["drain", "maint"] {
            if !set_state(socket, &server, state).await? {
                return Ok(true);
            }
        }
        answer = command(socket, &del).await?;
    }
    if answer.contains("Server deleted") || answer.contains("No such server") {
        return Ok(true);
    }
    if answer.contains("No such backend") {
        return Err(RuntimeApiError::Refused {
            command: del,
            answer,
        });
    }
    tracing::debug!(command = %del, %answer, "server kept in maintenance until its requests are done");
    Ok(false)
}

/// Removes `host` from the running HAProxy's map (absent is fine).
pub async fn remove_route(socket: &Path, map: &Path, h: &str) -> Result<(), RuntimeApiError> {
    let (map, h) = (map_path(map)?, host(h)?);
    let del = format!("del map {map} {h}");
    let answer = command(socket, &del).await?;
    accepted(
        answer.is_empty() || answer.contains("not found"),
        del,
        answer,
    )
}
