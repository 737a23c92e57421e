//! HAProxy's runtime API (the admin socket): route changes without a reload. Every argument is
//! checked here again (host names against the domain grammar, numbers as numbers), so no
//! command can carry a second one.

use std::path::Path;

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

/// One command, one connection (the socket answers and closes); the answer's text.
pub async fn command(socket: &Path, line: &str) -> Result<String, RuntimeApiError> {
    debug_assert!(!line.contains('\n'), "one command per call");
    let mut s = UnixStream::connect(socket).await?;
    s.write_all(format!("{line}\n").as_bytes()).await?;
    // The master socket answers and then waits for more unless our side is closed.
    s.shutdown().await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out.trim().to_owned())
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
    let mut s = UnixStream::connect(socket).await?;
    s.write_all(format!("{line} <<\n{pem}\n\n").as_bytes())
        .await?;
    s.shutdown().await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out.trim().to_owned())
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

/// Points `host` at `127.0.0.1:port` in the running HAProxy (adds or replaces the entry).
pub async fn set_route(
    socket: &Path,
    map: &Path,
    h: &str,
    port: u16,
) -> Result<(), RuntimeApiError> {
    let (map, h) = (map_path(map)?, host(h)?);
    let set = format!("set map {map} {h} 127.0.0.1:{port}");
    let answer = command(socket, &set).await?;
    if answer.is_empty() {
        return Ok(());
    }
    if !answer.contains("not found") {
        return Err(RuntimeApiError::Refused {
            command: set,
            answer,
        });
    }
    let add = format!("add map {map} {h} 127.0.0.1:{port}");
    let answer = command(socket, &add).await?;
    if answer.is_empty() {
        Ok(())
    } else {
        Err(RuntimeApiError::Refused {
            command: add,
            answer,
        })
    }
}

/// Removes `host` from the running HAProxy's map (absent is fine).
pub async fn remove_route(socket: &Path, map: &Path, h: &str) -> Result<(), RuntimeApiError> {
    let (map, h) = (map_path(map)?, host(h)?);
    let del = format!("del map {map} {h}");
    let answer = command(socket, &del).await?;
    if answer.is_empty() || answer.contains("not found") {
        Ok(())
    } else {
        Err(RuntimeApiError::Refused {
            command: del,
            answer,
        })
    }
}
